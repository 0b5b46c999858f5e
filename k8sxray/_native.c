/* k8sxray._native: the WSGI entry's unsampled path, in C.
 *
 * An unsampled request needs little: its trace header checked (or the sampler asked), a
 * trace made current for outgoing calls, the response header added, and the previous
 * trace made current again. In Python those steps cost about 3 us inside a framework, most
 * of it in the interpreter's frames; here they cost a fraction of that. An unsampled request
 * is one whose X-Amzn-Trace-Id says Sampled=0 in the usual form, or, without one, whose W3C
 * traceparent has its sampled flag off (read as _header.parse_traceparent reads it), or that
 * has neither and the sampler turns down. Everything else (sampled requests, unusual headers,
 * a tracestate to pass on, tracing off) goes to the Python entry, which stays the reference;
 * the tests run both. The module is optional: without a C compiler, k8sxray runs on the
 * Python entry alone.
 *
 * Python API (see _native.pyi):
 *   hooks(...)                      the Python objects the fast path reads, set once
 *   Entry(app, traced)              the WSGI callable that serves *app*; traced(environ,
 *                                   start_response[, True]) is the Python entry (True: the
 *                                   sampler was asked and said yes)
 *
 * State is module-global (single-phase init): k8sxray is not built for sub-interpreters.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* --- the hooks, set once by k8sxray.integrations.wsgi ------------------------------------- */

static PyObject *recorder_globals;   /* k8sxray._recorder.__dict__: "_state" */
static PyObject *config_globals;     /* k8sxray._config.__dict__: "_current" */
static PyObject *context_var;        /* k8sxray._context.current_entity */
static PyTypeObject *unsampled_type; /* k8sxray._segment.UnsampledTrace */
static PyObject *random_bits;        /* k8sxray._ids._bits (random.Random.getrandbits) */
static PyObject *wall_clock;             /* time.time */
static PyObject *streaming_body;     /* wsgi._unsampled_body(trace, result) -> body */
static PyObject *failed;             /* wsgi._native_failed(where, exc) */

/* interned strings */
static PyObject *s_header_key, *s_traceparent_key, *s_tracestate_key, *s_method_key, *s_script_key, *s_path_key, *s_host_key, *s_server_key;
static PyObject *s_state, *s_current, *s_config, *s_xray_in, *s_w3c_in, *s_sampler, *s_decide;
static PyObject *s_trace_id, *s_parent_id, *s_extra, *s_tracestate, *s_response_header, *s_token;
static PyObject *s_old_value;
static PyObject *s_missing, *s_get, *s_empty, *s_header_name, *s_close;
static PyObject *s_status, *s_headers, *s_exc_info;
static PyObject *s_where_start, *s_where_response, *s_where_end;

/* Call a hook (held across the call: hooks() may replace it meanwhile). */
static PyObject *
call_hook(PyObject *hook, PyObject *const *args, Py_ssize_t n)
{
    Py_INCREF(hook);
    PyObject *result = PyObject_Vectorcall(hook, args, n, NULL);
    Py_DECREF(hook);
    return result;
}

/* An internal failure: handed to the Python guard (logged once), never raised into the app.
 * 0 when it was handled; -1, with the exception still set, when it must propagate (it is
 * not an Exception: KeyboardInterrupt, SystemExit), as the Python entry's `except Exception`
 * lets it. */
static int
report(PyObject *where)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    PyObject *args[2] = {where, value != NULL ? value : Py_None};
    PyObject *done = call_hook(failed, args, 2);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (done == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return -1;
        }
        PyErr_Clear();
    }
    Py_XDECREF(done);
    return 0;
}

/* The value in *dict* under the str *key*, borrowed; NULL when missing. */
static PyObject *
lookup(PyObject *dict, PyObject *key)
{
    PyObject *value = PyDict_GetItemWithError(dict, key);
    if (value == NULL && PyErr_Occurred()) {
        PyErr_Clear(); /* a str key in a dict: only MemoryError; "missing" is the safe answer */
    }
    return value;
}

/* Whether *environ* has a non-empty value under *key* (anything but a str counts). */
static int
present(PyObject *environ, PyObject *key)
{
    PyObject *value = lookup(environ, key);
    return value != NULL && !(PyUnicode_CheckExact(value) && PyUnicode_GET_LENGTH(value) == 0);
}

/* The recorder's state when tracing is on, X-Amzn-Trace-Id is read, and it is configured as
 * now, else NULL (new reference). */
static PyObject *
usable_state(void)
{
    PyObject *state = lookup(recorder_globals, s_state);
    PyObject *current = lookup(config_globals, s_current);
    if (state == NULL || state == Py_None || current == NULL) {
        return NULL;
    }
    Py_INCREF(state);
    PyObject *config = PyObject_GetAttr(state, s_config);
    if (config == NULL) {
        PyErr_Clear();
        Py_DECREF(state);
        return NULL;
    }
    Py_DECREF(config); /* only its identity matters; state keeps it alive */
    if (config != current) {
        Py_DECREF(state);
        return NULL;
    }
    PyObject *enabled = PyObject_GetAttr(state, s_xray_in);
    if (enabled != Py_True) {
        if (enabled == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(enabled);
        Py_DECREF(state);
        return NULL;
    }
    Py_DECREF(enabled);
    return state;
}

static const char HEX[] = "0123456789abcdef";

static int
all_hex(const Py_UCS1 *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS1 c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

/* "Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=0": the usual unsampled header, as
 * _header.canonical matches it (74 characters). */
static int
canonical_unsampled(PyObject *header)
{
    if (!PyUnicode_CheckExact(header) || PyUnicode_GET_LENGTH(header) != 74 ||
        PyUnicode_KIND(header) != PyUnicode_1BYTE_KIND) {
        return 0;
    }
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(header);
    return memcmp(p, "Root=1-", 7) == 0 && all_hex(p + 7, 8) && p[15] == '-' && all_hex(p + 16, 24) &&
           memcmp(p + 40, ";Parent=", 8) == 0 && all_hex(p + 48, 16) &&
           memcmp(p + 64, ";Sampled=0", 10) == 0;
}

/* A W3C traceparent, read exactly as _header.parse_traceparent reads it (W3C Trace Context
 * level 1): at most 512 characters; spaces and tabs around it dropped; then
 * <2 hex version>-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, lowercase; version 00
 * is exactly that (55 characters), a later one may go on after a further "-", version ff is
 * invalid; an all-zero trace or parent id is invalid.
 *   1: valid, *trace and *parent point at its ids' digits, *sampled is the flags' sampled bit
 *   0: invalid (the request has no usable traceparent)
 *  -1: not a str of one-byte characters: the Python entry reads it */
static int
parse_traceparent(PyObject *value, const Py_UCS1 **trace, const Py_UCS1 **parent, int *sampled)
{
    if (!PyUnicode_CheckExact(value) || PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND) {
        return -1;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(value);
    if (n > 512) {
        return 0;
    }
    while (n > 0 && (p[0] == ' ' || p[0] == '\t')) {
        p++;
        n--;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
        n--;
    }
    if (n < 55 || !all_hex(p, 2) || p[2] != '-' || !all_hex(p + 3, 32) || p[35] != '-' ||
        !all_hex(p + 36, 16) || p[52] != '-' || !all_hex(p + 53, 2)) {
        return 0;
    }
    if (p[0] == '0' && p[1] == '0') {
        if (n != 55) {
            return 0;
        }
    } else if ((p[0] == 'f' && p[1] == 'f') || (n > 55 && p[55] != '-')) {
        return 0;
    }
    static const char zeros[32] = "00000000000000000000000000000000";
    if (memcmp(p + 3, zeros, 32) == 0 || memcmp(p + 36, zeros, 16) == 0) {
        return 0;
    }
    Py_UCS1 last = p[54];
    *sampled = ((last <= '9' ? last - '0' : last - 'a' + 10) & 1);
    *trace = p + 3;
    *parent = p + 36;
    return 1;
}

static void
put_hex(Py_UCS1 *out, unsigned long long value, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        out[i] = (Py_UCS1)HEX[value & 0xf];
        value >>= 4;
    }
}

static int
draw(int bits, unsigned long long *value)
{
    PyObject *n = PyLong_FromLong(bits);
    if (n == NULL) {
        return -1;
    }
    PyObject *drawn = call_hook(random_bits, &n, 1);
    Py_DECREF(n);
    if (drawn == NULL) {
        return -1;
    }
    *value = PyLong_AsUnsignedLongLong(drawn);
    Py_DECREF(drawn);
    return (*value == (unsigned long long)-1 && PyErr_Occurred()) ? -1 : 0;
}

/* "Root=1-<8 hex seconds>-<24 hex random>": a new trace's response header (the trace id
 * is its characters 5..40), as _ids.new_root writes the id. */
static PyObject *
new_root_header(double now)
{
    unsigned long long high, low;
    if (draw(64, &high) < 0 || draw(32, &low) < 0) {
        return NULL;
    }
    PyObject *header = PyUnicode_New(40, 127);
    if (header == NULL) {
        return NULL;
    }
    Py_UCS1 *p = PyUnicode_1BYTE_DATA(header);
    memcpy(p, "Root=1-", 7);
    put_hex(p + 7, (unsigned long long)now & 0xffffffffULL, 8);
    p[15] = '-';
    put_hex(p + 16, high, 16);
    put_hex(p + 32, low, 8);
    return header;
}

/* A new UnsampledTrace, its fields set as _recorder sets them (no __init__ call); its
 * _token is set once it is current. *answer* is its response header, "Root=1-<8>-<24>",
 * which also gives its trace id; *parent_id* its parent (Py_None for none). Steals *answer*
 * and hands it out in *response* (new references); NULL with an exception set, also when
 * *answer* or *parent_id* is NULL. */
static PyObject *
new_trace(PyObject *answer, PyObject *parent_id, PyObject **response)
{
    if (answer == NULL || parent_id == NULL) {
        Py_XDECREF(answer);
        return NULL;
    }
    PyObject *trace_id = PyUnicode_Substring(answer, 5, 40);
    PyObject *trace = trace_id == NULL ? NULL : unsampled_type->tp_alloc(unsampled_type, 0);
    if (trace != NULL &&
        (PyObject_SetAttr(trace, s_trace_id, trace_id) < 0 ||
         PyObject_SetAttr(trace, s_parent_id, parent_id) < 0 ||
         PyObject_SetAttr(trace, s_extra, s_empty) < 0 || PyObject_SetAttr(trace, s_tracestate, s_empty) < 0 ||
         PyObject_SetAttr(trace, s_response_header, answer) < 0)) {
        Py_CLEAR(trace);
    }
    Py_XDECREF(trace_id);
    if (trace == NULL) {
        Py_DECREF(answer);
    } else {
        *response = answer;
    }
    return trace;
}

/* Set the value that the ContextVar.set which returned *token* replaced. */
static int
set_replaced(PyObject *token)
{
    PyObject *old = PyObject_GetAttr(token, s_old_value);
    PyObject *missing = PyObject_GetAttr((PyObject *)Py_TYPE(token), s_missing);
    int rc = -1;
    if (old != NULL && missing != NULL) {
        PyObject *again = PyContextVar_Set(context_var, old == missing ? Py_None : old);
        rc = again == NULL ? -1 : 0;
        Py_XDECREF(again);
    }
    Py_XDECREF(old);
    Py_XDECREF(missing);
    return rc;
}

/* Make the trace that was current before *trace* current again (once), as wsgi._untrace
 * does: the token lives on the trace, as in Python. 0, or -1 with an exception set. */
static int
untrace(PyObject *trace)
{
    PyObject *token = PyObject_GetAttr(trace, s_token);
    if (token == NULL || token == Py_None) {
        Py_XDECREF(token);
        return token == NULL ? -1 : 0;
    }
    int rc = PyObject_SetAttr(trace, s_token, Py_None);
    if (rc == 0) {
        rc = PyContextVar_Reset(context_var, token);
        if (rc < 0 && PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear(); /* ended in another context (a thread or task): best effort */
            rc = set_replaced(token);
        }
    }
    Py_DECREF(token);
    return rc;
}

/* Close the app's body (WSGI requires it) on a path that gives up on it, keeping the
 * exception that is being raised. */
static void
close_body(PyObject *body)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *close = PyObject_GetAttr(body, s_close);
    PyObject *done = close == NULL ? NULL : PyObject_CallNoArgs(close);
    Py_XDECREF(close);
    Py_XDECREF(done);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

/* --- Responder: the start_response the app calls ------------------------------------------ */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *start_response; /* the server's */
    PyObject *trace;
    PyObject *header; /* the response header's value */
    int ready;        /* the app gave a Content-Length: its body is ready when it returns */
} Responder;

static PyTypeObject ResponderType;

/* Whether *name* is the str *want* (lowercase, *n* characters) in any case. */
static int
is_named(PyObject *name, const char *want, Py_ssize_t n)
{
    if (!PyUnicode_Check(name) || PyUnicode_GET_LENGTH(name) != n ||
        PyUnicode_KIND(name) != PyUnicode_1BYTE_KIND) {
        return 0;
    }
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(name);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS1 c = p[i];
        if (c >= 'A' && c <= 'Z') {
            c = (Py_UCS1)(c + ('a' - 'A'));
        }
        if (c != (Py_UCS1)want[i]) {
            return 0;
        }
    }
    return 1;
}

/* The app's headers with the trace header added (new list), unless the app set one itself
 * (the official SDK's middleware does): then they are as the app gave them. Notes a
 * Content-Length (the name of a (name, value) tuple or list, as the Python entry reads
 * item[0]). */
static PyObject *
with_trace_header(Responder *self, PyObject *headers, int *ready)
{
    PyObject *list = PySequence_List(headers);
    if (list == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(list);
    int named = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        PyObject *name = NULL;
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) > 0) {
            name = PyTuple_GET_ITEM(item, 0);
        } else if (PyList_Check(item) && PyList_GET_SIZE(item) > 0) {
            name = PyList_GET_ITEM(item, 0);
        }
        if (name != NULL) {
            *ready = *ready || is_named(name, "content-length", 14);
            named = named || is_named(name, "x-amzn-trace-id", 15);
        }
    }
    if (named) {
        return list;
    }
    PyObject *pair = PyTuple_Pack(2, s_header_name, self->header);
    if (pair == NULL || PyList_Append(list, pair) < 0) {
        Py_XDECREF(pair);
        Py_DECREF(list);
        return NULL;
    }
    Py_DECREF(pair);
    return list;
}

/* start_response's arguments, by position or by name, into given[3] (status, headers,
 * exc_info; borrowed). 0 when the call is not one WSGI allows. */
static int
wsgi_arguments(PyObject *const *args, size_t nargsf, PyObject *kwnames, PyObject **given)
{
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (n > 3) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        given[i] = args[i];
    }
    Py_ssize_t names = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < names; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        int at = -1;
        if (PyUnicode_Compare(name, s_status) == 0) {
            at = 0;
        } else if (PyUnicode_Compare(name, s_headers) == 0) {
            at = 1;
        } else if (PyUnicode_Compare(name, s_exc_info) == 0) {
            at = 2;
        }
        if (at < 0 || given[at] != NULL) {
            return 0;
        }
        given[at] = args[n + i];
    }
    return given[0] != NULL && given[1] != NULL;
}

static PyObject *
responder_call(Responder *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *given[3] = {NULL, NULL, NULL};
    if (!wsgi_arguments(args, nargsf, kwnames, given)) {
        /* not a call WSGI allows: the server says so */
        return PyObject_Vectorcall(self->start_response, args, nargsf, kwnames);
    }
    int with_exc_info = given[2] == NULL ? 0 : PyObject_IsTrue(given[2]);
    if (with_exc_info < 0) {
        return NULL; /* the app's exc_info cannot say whether it is true: as in Python */
    }
    int ready = 0;
    PyObject *headers = with_trace_header(self, given[1], &ready);
    if (headers == NULL) {
        if (report(s_where_response) < 0) {
            return NULL;
        }
        Py_INCREF(given[1]); /* the app's headers, as they are */
        headers = given[1];
    } else if (ready) {
        /* the body is ready once the app returns (until then the app may still make outgoing
         * calls): the trace ends then, without wrapping the body */
        self->ready = 1;
    }
    PyObject *call[3] = {given[0], headers, given[2]};
    PyObject *result = PyObject_Vectorcall(self->start_response, call, with_exc_info ? 3 : 2, NULL);
    Py_DECREF(headers);
    return result;
}

static int
responder_traverse(Responder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->start_response);
    Py_VISIT(self->trace);
    Py_VISIT(self->header);
    return 0;
}

static int
responder_clear(Responder *self)
{
    Py_CLEAR(self->start_response);
    Py_CLEAR(self->trace);
    Py_CLEAR(self->header);
    return 0;
}

static void
responder_dealloc(Responder *self)
{
    PyObject_GC_UnTrack(self);
    responder_clear(self);
    PyObject_GC_Del(self);
}

static PyTypeObject ResponderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "k8sxray._native.Responder",
    .tp_doc = "The start_response an unsampled request's app calls: it adds X-Amzn-Trace-Id.",
    .tp_basicsize = sizeof(Responder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Responder, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_traverse = (traverseproc)responder_traverse,
    .tp_clear = (inquiry)responder_clear,
    .tp_dealloc = (destructor)responder_dealloc,
};

/* --- Entry: the traced WSGI app ----------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *app;
    PyObject *traced; /* the Python entry */
    PyObject *dict;
    PyObject *weakrefs;
} Entry;

/* environ[key] when it is a str, *fallback* when it is missing (new references); NULL
 * (no error set) when it is something else. */
static PyObject *
environ_str(PyObject *environ, PyObject *key, PyObject *fallback)
{
    PyObject *value = lookup(environ, key);
    if (value == NULL) {
        value = fallback;
    } else if (!PyUnicode_CheckExact(value)) {
        return NULL;
    }
    Py_INCREF(value);
    return value;
}

/* A request without a trace header: the sampler decides.
 *   TRACE:    *out is the new unsampled trace, *response its response header (new references)
 *   SERVED:   the sampler said yes and the Python entry served the request: *out is its
 *             result (NULL when the app raised: that propagates)
 *   FALLBACK: an unusual environ: the Python entry serves it whole (no error set)
 *   FAILED:   an internal error (set) */
enum { TRACE, SERVED, FALLBACK, FAILED };

static int
decide(Entry *self, PyObject *state, PyObject *const *args, PyObject **out, PyObject **response)
{
    PyObject *environ = args[0];
    PyObject *method = environ_str(environ, s_method_key, s_get);
    PyObject *script = environ_str(environ, s_script_key, s_empty);
    PyObject *path_info = environ_str(environ, s_path_key, s_empty);
    PyObject *host = lookup(environ, s_host_key);
    if (host == NULL || (PyUnicode_CheckExact(host) && PyUnicode_GET_LENGTH(host) == 0)) {
        host = environ_str(environ, s_server_key, s_empty);
    } else if (PyUnicode_CheckExact(host)) {
        Py_INCREF(host);
    } else {
        host = NULL;
    }
    PyObject *path = NULL;
    if (method != NULL && script != NULL && path_info != NULL && host != NULL) {
        path = PyUnicode_Concat(script, path_info);
    }
    Py_XDECREF(script);
    Py_XDECREF(path_info);
    int outcome = FAILED;
    if (path == NULL) {
        outcome = PyErr_Occurred() ? FAILED : FALLBACK; /* an unusual environ: the Python entry */
        goto done;
    }
    PyObject *when = call_hook(wall_clock, NULL, 0); /* read first, as the Python entry does */
    double now = when == NULL ? -1.0 : PyFloat_AsDouble(when);
    Py_XDECREF(when);
    if (now == -1.0 && PyErr_Occurred()) {
        goto done;
    }
    PyObject *sampler = PyObject_GetAttr(state, s_sampler);
    PyObject *answer = NULL;
    if (sampler != NULL) {
        PyObject *call[4] = {sampler, host, method, path};
        answer = PyObject_VectorcallMethod(s_decide, call, 4, NULL);
        Py_DECREF(sampler);
    }
    int sampled = answer == NULL ? -1 : PyObject_IsTrue(answer);
    Py_XDECREF(answer);
    if (sampled < 0) {
        goto done;
    }
    if (sampled) {
        PyObject *call[3] = {args[0], args[1], Py_True};
        *out = PyObject_Vectorcall(self->traced, call, 3, NULL);
        outcome = SERVED;
        goto done;
    }
    *out = new_trace(new_root_header(now), Py_None, response);
    if (*out != NULL) {
        outcome = TRACE;
    }
done:
    Py_XDECREF(method);
    Py_XDECREF(host);
    Py_XDECREF(path);
    return outcome;
}

/* A request whose header says Sampled=0, in the usual form: its trace, and in *response
 * its response header (new references). */
static PyObject *
continue_unsampled(PyObject *header, PyObject **response)
{
    PyObject *parent_id = PyUnicode_Substring(header, 48, 64);
    PyObject *trace = new_trace(PyUnicode_Substring(header, 0, 40), parent_id, response);
    Py_XDECREF(parent_id);
    return trace;
}

/* A request whose traceparent (digits at *trace* and *parent*) says not sampled: its trace,
 * and in *response* its response header "Root=1-<8>-<24>" (new references), as
 * _recorder.start_request makes them. */
static PyObject *
continue_traceparent(const Py_UCS1 *trace, const Py_UCS1 *parent, PyObject **response)
{
    PyObject *answer = PyUnicode_New(40, 127);
    PyObject *parent_id = PyUnicode_New(16, 127);
    if (answer != NULL && parent_id != NULL) {
        Py_UCS1 *p = PyUnicode_1BYTE_DATA(answer);
        memcpy(p, "Root=1-", 7);
        memcpy(p + 7, trace, 8);
        p[15] = '-';
        memcpy(p + 16, trace + 8, 24);
        memcpy(PyUnicode_1BYTE_DATA(parent_id), parent, 16);
    }
    PyObject *result = new_trace(answer, parent_id, response);
    Py_XDECREF(parent_id);
    return result;
}

/* Whether the recorder's *state* reads an incoming traceparent (-1 with an error set). */
static int
reads_w3c(PyObject *state)
{
    PyObject *w3c = PyObject_GetAttr(state, s_w3c_in);
    if (w3c == NULL) {
        return -1;
    }
    int yes = PyObject_IsTrue(w3c);
    Py_DECREF(w3c);
    return yes;
}

/* The Responder for *trace* and its response *header*, the trace made current; NULL with
 * an exception set. Steals the references to *trace* and *header*. */
static Responder *
responder_for(PyObject *trace, PyObject *header, PyObject *start_response)
{
    Responder *responder = PyObject_GC_New(Responder, &ResponderType);
    if (responder == NULL) {
        Py_DECREF(trace);
        Py_DECREF(header);
        return NULL;
    }
    responder->vectorcall = (vectorcallfunc)responder_call;
    Py_INCREF(start_response);
    responder->start_response = start_response;
    responder->trace = trace;
    responder->header = header;
    responder->ready = 0;
    PyObject_GC_Track(responder);
    PyObject *token = PyContextVar_Set(context_var, trace);
    if (token == NULL) {
        Py_DECREF(responder);
        return NULL;
    }
    if (PyObject_SetAttr(trace, s_token, token) < 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (PyContextVar_Reset(context_var, token) < 0) {
            PyErr_Clear();
        }
        PyErr_Restore(type, value, tb);
        Py_DECREF(token);
        Py_DECREF(responder);
        return NULL;
    }
    Py_DECREF(token);
    return responder;
}

/* What the server gets once the app has returned *result* (a new reference, or NULL with
 * the exception to raise). The trace ends as in the Python entry: at once for a body that
 * is ready, when the server closes it for one still to be produced. */
static PyObject *
finish(Responder *responder, PyObject *result)
{
    PyObject *trace = responder->trace;
    if (result == NULL) { /* the app raised: restore the context, raise that exception */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (untrace(trace) < 0 && report(s_where_end) < 0) {
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return NULL;
        }
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result) || responder->ready) {
        if (untrace(trace) < 0 && report(s_where_end) < 0) {
            close_body(result);
            Py_DECREF(result);
            return NULL;
        }
        return result;
    }
    /* a body still to produce: the trace stays current until the server closes it */
    PyObject *pair[2] = {trace, result};
    PyObject *body = call_hook(streaming_body, pair, 2);
    if (body != NULL) {
        Py_DECREF(result);
        return body;
    }
    /* the body as the app gave it, and the context restored now: nothing would later */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (untrace(trace) < 0) {
        PyErr_Clear();
    }
    PyErr_Restore(type, value, tb);
    if (report(s_where_end) < 0) {
        close_body(result);
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

static PyObject *
entry_call(Entry *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL || !PyDict_CheckExact(args[0]) ||
        recorder_globals == NULL) {
        return PyObject_Vectorcall(self->traced, args, nargsf, kwnames);
    }
    PyObject *header = lookup(args[0], s_header_key);
    int none = header == NULL || (PyUnicode_CheckExact(header) && PyUnicode_GET_LENGTH(header) == 0);
    if (!none && !canonical_unsampled(header)) {
        return PyObject_Vectorcall(self->traced, args, 2, NULL); /* Sampled=1 or ?, or unusual */
    }
    /* W3C: a request without X-Amzn-Trace-Id may continue a traceparent (read below); one with
     * a tracestate to pass on is the Python entry's */
    PyObject *traceparent = NULL;
    if (none && present(args[0], s_traceparent_key)) {
        traceparent = lookup(args[0], s_traceparent_key);
    }
    if ((!none || traceparent != NULL) && present(args[0], s_tracestate_key)) {
        return PyObject_Vectorcall(self->traced, args, 2, NULL);
    }
    const Py_UCS1 *trace_digits = NULL, *parent_digits = NULL;
    int sampled = 0, valid = 0;
    if (traceparent != NULL) {
        valid = parse_traceparent(traceparent, &trace_digits, &parent_digits, &sampled);
        if (valid < 0 || (valid > 0 && sampled)) { /* unusual, or sampled: the Python entry */
            return PyObject_Vectorcall(self->traced, args, 2, NULL);
        }
    }
    Py_XINCREF(header); /* held: reading the state may run Python code */
    Py_XINCREF(traceparent);
    PyObject *state = usable_state();
    if (state == NULL) {
        Py_XDECREF(header);
        Py_XDECREF(traceparent);
        return PyObject_Vectorcall(self->traced, args, 2, NULL); /* off, or (re)configuring */
    }
    PyObject *trace = NULL, *response = NULL;
    int outcome = TRACE;
    if (none && traceparent != NULL) {
        if (valid > 0) { /* an unsampled one, if W3C is read */
            valid = reads_w3c(state);
        }
        if (valid < 0) {
            outcome = FAILED;
        } else if (valid > 0) {
            trace = continue_traceparent(trace_digits, parent_digits, &response);
            outcome = trace == NULL ? FAILED : TRACE;
        } else { /* not read, or invalid: as if there were none */
            outcome = decide(self, state, args, &trace, &response);
        }
    } else if (none) {
        outcome = decide(self, state, args, &trace, &response);
    } else {
        trace = continue_unsampled(header, &response);
        outcome = trace == NULL ? FAILED : TRACE;
    }
    Py_XDECREF(header);
    Py_XDECREF(traceparent);
    Py_DECREF(state);
    if (outcome == SERVED) {
        return trace;
    }
    if (outcome == FALLBACK) {
        return PyObject_Vectorcall(self->traced, args, 2, NULL);
    }
    Responder *responder = outcome == TRACE ? responder_for(trace, response, args[1]) : NULL;
    if (responder == NULL) { /* served untraced, as the Python entry does */
        if (report(s_where_start) < 0) {
            return NULL;
        }
        return PyObject_Vectorcall(self->app, args, 2, NULL);
    }
    PyObject *call[2] = {args[0], (PyObject *)responder};
    PyObject *result = finish(responder, PyObject_Vectorcall(self->app, call, 2, NULL));
    Py_DECREF(responder);
    return result;
}

static int
entry_traverse(Entry *self, visitproc visit, void *arg)
{
    Py_VISIT(self->app);
    Py_VISIT(self->traced);
    Py_VISIT(self->dict);
    return 0;
}

static int
entry_clear(Entry *self)
{
    Py_CLEAR(self->app);
    Py_CLEAR(self->traced);
    Py_CLEAR(self->dict);
    return 0;
}

static void
entry_dealloc(Entry *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    entry_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
entry_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *app, *traced;
    static char *names[] = {"app", "traced", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:Entry", names, &app, &traced)) {
        return NULL;
    }
    if (!PyCallable_Check(app) || !PyCallable_Check(traced)) {
        PyErr_SetString(PyExc_TypeError, "Entry(app, traced): two callables");
        return NULL;
    }
    Entry *self = (Entry *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = (vectorcallfunc)entry_call;
    Py_INCREF(app);
    self->app = app;
    Py_INCREF(traced);
    self->traced = traced;
    return (PyObject *)self;
}

static PyObject *
entry_repr(Entry *self)
{
    return PyUnicode_FromFormat("<k8sxray traced WSGI app %R>", self->app);
}

static PyMemberDef entry_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(Entry, app), READONLY, "the app this entry traces"},
    {NULL},
};

static PyObject *
entry_traced_flag(PyObject *self, void *closure)
{
    Py_RETURN_TRUE;
}

static PyGetSetDef entry_getset[] = {
    {"_k8sxray_traced", entry_traced_flag, NULL, "always True: this app is traced", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static PyTypeObject EntryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "k8sxray._native.Entry",
    .tp_doc = "A traced WSGI app: unsampled requests are served here, the others by the Python entry.",
    .tp_basicsize = sizeof(Entry),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Entry, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = (reprfunc)entry_repr,
    .tp_dictoffset = offsetof(Entry, dict),
    .tp_weaklistoffset = offsetof(Entry, weakrefs),
    .tp_new = entry_new,
    .tp_traverse = (traverseproc)entry_traverse,
    .tp_clear = (inquiry)entry_clear,
    .tp_dealloc = (destructor)entry_dealloc,
    .tp_members = entry_members,
    .tp_getset = entry_getset,
};

/* --- module ------------------------------------------------------------------------------- */

static PyObject *
hooks(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"recorder_globals", "config_globals", "context_var",
                            "unsampled_type",   "random_bits",    "clock",
                            "streaming_body",   "failed",         NULL};
    PyObject *recorder, *config, *var, *type, *bits, *now, *body, *fail;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!OO!OOOO:hooks", names, &PyDict_Type, &recorder,
                                     &PyDict_Type, &config, &var, &PyType_Type, &type, &bits, &now, &body,
                                     &fail)) {
        return NULL;
    }
    if (!PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError, "hooks(): context_var must be a ContextVar");
        return NULL;
    }
    Py_INCREF(recorder);
    Py_XSETREF(recorder_globals, recorder);
    Py_INCREF(config);
    Py_XSETREF(config_globals, config);
    Py_INCREF(var);
    Py_XSETREF(context_var, var);
    Py_INCREF(type);
    Py_XSETREF(unsampled_type, (PyTypeObject *)type);
    Py_INCREF(bits);
    Py_XSETREF(random_bits, bits);
    Py_INCREF(now);
    Py_XSETREF(wall_clock, now);
    Py_INCREF(body);
    Py_XSETREF(streaming_body, body);
    Py_INCREF(fail);
    Py_XSETREF(failed, fail);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"hooks", (PyCFunction)(void (*)(void))hooks, METH_VARARGS | METH_KEYWORDS,
     "Set the Python objects the fast path reads (k8sxray.integrations.wsgi does, once)."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "k8sxray._native",
    .m_doc = "The WSGI entry's unsampled path, in C (optional: k8sxray works without it).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int
intern(PyObject **slot, const char *text)
{
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__native(void)
{
    if (intern(&s_header_key, "HTTP_X_AMZN_TRACE_ID") < 0 || intern(&s_method_key, "REQUEST_METHOD") < 0 ||
        intern(&s_traceparent_key, "HTTP_TRACEPARENT") < 0 || intern(&s_tracestate_key, "HTTP_TRACESTATE") < 0 ||
        intern(&s_tracestate, "tracestate") < 0 ||
        intern(&s_script_key, "SCRIPT_NAME") < 0 || intern(&s_path_key, "PATH_INFO") < 0 ||
        intern(&s_host_key, "HTTP_HOST") < 0 || intern(&s_server_key, "SERVER_NAME") < 0 ||
        intern(&s_state, "_state") < 0 || intern(&s_current, "_current") < 0 ||
        intern(&s_config, "config") < 0 || intern(&s_xray_in, "xray_in") < 0 ||
        intern(&s_w3c_in, "w3c_in") < 0 ||
        intern(&s_sampler, "sampler") < 0 || intern(&s_decide, "decide") < 0 ||
        intern(&s_trace_id, "trace_id") < 0 || intern(&s_parent_id, "parent_id") < 0 ||
        intern(&s_extra, "extra") < 0 || intern(&s_response_header, "response_header") < 0 ||
        intern(&s_token, "_token") < 0 || intern(&s_old_value, "old_value") < 0 ||
        intern(&s_missing, "MISSING") < 0 || intern(&s_get, "GET") < 0 || intern(&s_empty, "") < 0 ||
        intern(&s_header_name, "X-Amzn-Trace-Id") < 0 || intern(&s_close, "close") < 0 ||
        intern(&s_status, "status") < 0 || intern(&s_headers, "headers") < 0 ||
        intern(&s_exc_info, "exc_info") < 0 || intern(&s_where_start, "wsgi.start") < 0 ||
        intern(&s_where_response, "wsgi.start_response") < 0 || intern(&s_where_end, "wsgi.end") < 0) {
        return NULL;
    }
    if (PyType_Ready(&ResponderType) < 0 || PyType_Ready(&EntryType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&EntryType);
    if (PyModule_AddObject(module, "Entry", (PyObject *)&EntryType) < 0) {
        Py_DECREF(&EntryType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
