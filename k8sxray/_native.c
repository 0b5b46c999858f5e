/* k8sxray._native: the WSGI entry's unsampled path, in C.
 *
 * An unsampled request needs little: its trace header checked (or the sampler asked), a
 * trace made current for outgoing calls, the response header added, and the previous
 * trace made current again. In Python those steps cost about 3 us inside a framework, most
 * of it in the interpreter's frames; here they cost a fraction of that. Everything else
 * (sampled requests, unusual headers, tracing off) goes to the Python entry, which stays
 * the reference; the tests run both. The module is optional: without a C compiler,
 * k8sxray runs on the Python entry alone.
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
#include <time.h>

/* --- the hooks, set once by k8sxray.integrations.wsgi ------------------------------------- */

static PyObject *recorder_globals;   /* k8sxray._recorder.__dict__: "_state" */
static PyObject *config_globals;     /* k8sxray._config.__dict__: "_current" */
static PyObject *context_var;        /* k8sxray._context.current_entity */
static PyTypeObject *unsampled_type; /* k8sxray._segment.UnsampledTrace */
static PyObject *random_bits;        /* k8sxray._ids._bits (random.Random.getrandbits) */
static PyObject *streaming_body;     /* wsgi._unsampled_body(trace, result) -> body */
static PyObject *failed;             /* wsgi._native_failed(where, exc) */

/* interned strings */
static PyObject *s_header_key, *s_method_key, *s_script_key, *s_path_key, *s_host_key, *s_server_key;
static PyObject *s_state, *s_current, *s_config, *s_enabled, *s_sampler, *s_decide;
static PyObject *s_trace_id, *s_parent_id, *s_extra, *s_response_header, *s_token, *s_old_value;
static PyObject *s_missing, *s_get, *s_empty, *s_header_name, *s_where_start, *s_where_response, *s_where_end;

/* An internal failure: handed to the Python guard (logged once), never raised into the app.
 * Returns 0 when the failure was handled, -1 when it must propagate (KeyboardInterrupt...). */
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
    PyObject *done = PyObject_Vectorcall(failed, args, 2, NULL);
    Py_XDECREF(done);
    if (done == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return 0;
}

/* The Python object in *dict* under *key*, borrowed; NULL (no error set) when missing. */
static PyObject *
lookup(PyObject *dict, PyObject *key)
{
    PyObject *value = PyDict_GetItemWithError(dict, key);
    if (value == NULL && PyErr_Occurred()) {
        PyErr_Clear();
    }
    return value;
}

/* The recorder's state when tracing is on and configured as now, else NULL (new reference). */
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
    PyObject *enabled = PyObject_GetAttr(state, s_enabled);
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

/* An ASCII str of *n* characters, filled by the caller. */
static PyObject *
ascii_string(Py_ssize_t n, Py_UCS1 **data)
{
    PyObject *s = PyUnicode_New(n, 127);
    if (s != NULL) {
        *data = PyUnicode_1BYTE_DATA(s);
    }
    return s;
}

static int
put_hex(Py_UCS1 *out, unsigned long long value, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        out[i] = (Py_UCS1)HEX[value & 0xf];
        value >>= 4;
    }
    return digits;
}

static int
draw(int bits, unsigned long long *value)
{
    PyObject *n = PyLong_FromLong(bits);
    if (n == NULL) {
        return -1;
    }
    PyObject *drawn = PyObject_Vectorcall(random_bits, &n, 1, NULL);
    Py_DECREF(n);
    if (drawn == NULL) {
        return -1;
    }
    *value = PyLong_AsUnsignedLongLong(drawn);
    Py_DECREF(drawn);
    return (*value == (unsigned long long)-1 && PyErr_Occurred()) ? -1 : 0;
}

/* "Root=1-<8 hex seconds>-<24 hex random>": a new trace's response header (the trace id
 * is its characters 5..40). */
static PyObject *
new_root_header(double now)
{
    unsigned long long high, low;
    if (draw(64, &high) < 0 || draw(32, &low) < 0) {
        return NULL;
    }
    Py_UCS1 *p;
    PyObject *header = ascii_string(40, &p);
    if (header == NULL) {
        return NULL;
    }
    memcpy(p, "Root=1-", 7);
    put_hex(p + 7, (unsigned long long)now & 0xffffffffULL, 8);
    p[15] = '-';
    put_hex(p + 16, high, 16);
    put_hex(p + 32, low, 8);
    return header;
}

static double
wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A new UnsampledTrace, its fields set as _recorder sets them (no __init__ call). */
static PyObject *
new_trace(PyObject *trace_id, PyObject *parent_id, PyObject *response_header)
{
    PyObject *trace = unsampled_type->tp_alloc(unsampled_type, 0);
    if (trace == NULL) {
        return NULL;
    }
    if (PyObject_SetAttr(trace, s_trace_id, trace_id) < 0 ||
        PyObject_SetAttr(trace, s_parent_id, parent_id) < 0 ||
        PyObject_SetAttr(trace, s_extra, s_empty) < 0 ||
        PyObject_SetAttr(trace, s_response_header, response_header) < 0 ||
        PyObject_SetAttr(trace, s_token, Py_None) < 0) {
        Py_DECREF(trace);
        return NULL;
    }
    return trace;
}

/* --- Responder: the start_response the app calls ------------------------------------------ */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *start_response; /* the server's */
    PyObject *trace;
    PyObject *header;         /* the response header's value */
    PyObject *token;          /* restores the previous trace; NULL once restored */
    int ready;                /* the app gave a Content-Length: its body is ready */
} Responder;

static PyTypeObject ResponderType;

/* Make the trace that was current before this request's current again (once). */
static void
untrace(Responder *self)
{
    PyObject *token = self->token;
    if (token == NULL) {
        return;
    }
    self->token = NULL;
    if (PyContextVar_Reset(context_var, token) < 0) {
        /* ended in another context (a thread or task): set what the token replaced */
        PyErr_Clear();
        PyObject *old = PyObject_GetAttr(token, s_old_value);
        PyObject *missing = PyObject_GetAttr((PyObject *)Py_TYPE(token), s_missing);
        if (old != NULL && missing != NULL) {
            PyObject *again = PyContextVar_Set(context_var, old == missing ? Py_None : old);
            Py_XDECREF(again);
        }
        if (PyErr_Occurred()) {
            PyErr_Clear();
        }
        Py_XDECREF(old);
        Py_XDECREF(missing);
    }
    Py_DECREF(token);
}

static int
is_content_length(PyObject *name)
{
    if (!PyUnicode_CheckExact(name) || PyUnicode_GET_LENGTH(name) != 14 ||
        PyUnicode_KIND(name) != PyUnicode_1BYTE_KIND) {
        return 0;
    }
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(name);
    static const char want[] = "content-length";
    for (int i = 0; i < 14; i++) {
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

/* The app's headers with the trace header added (new list); notes a Content-Length. */
static PyObject *
with_trace_header(Responder *self, PyObject *headers, int *ready)
{
    PyObject *list = PySequence_List(headers);
    if (list == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 2 &&
            is_content_length(PyTuple_GET_ITEM(item, 0))) {
            *ready = 1;
            break;
        }
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

static PyObject *
responder_call(Responder *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 2 || nargs > 3 || kwnames != NULL) {
        /* not a call WSGI allows: the server says so */
        return PyObject_Vectorcall(self->start_response, args, nargsf, kwnames);
    }
    int ready = 0;
    PyObject *headers = with_trace_header(self, args[1], &ready);
    if (headers == NULL) {
        if (report(s_where_response) < 0) {
            return NULL;
        }
        return PyObject_Vectorcall(self->start_response, args, nargsf, NULL);
    }
    if (ready) {
        /* the body is ready: no outgoing call is left to make */
        self->ready = 1;
        untrace(self);
    }
    PyObject *call[3] = {args[0], headers, nargs == 3 ? args[2] : NULL};
    Py_ssize_t count = (nargs == 3 && args[2] != Py_None) ? 3 : 2;
    PyObject *result = PyObject_Vectorcall(self->start_response, call, count, NULL);
    Py_DECREF(headers);
    return result;
}

static int
responder_traverse(Responder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->start_response);
    Py_VISIT(self->trace);
    Py_VISIT(self->header);
    Py_VISIT(self->token);
    return 0;
}

static int
responder_clear(Responder *self)
{
    Py_CLEAR(self->start_response);
    Py_CLEAR(self->trace);
    Py_CLEAR(self->header);
    Py_CLEAR(self->token);
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
} Entry;

/* environ[key] when it is a str, else *fallback* (borrowed); NULL when not a str. */
static PyObject *
environ_str(PyObject *environ, PyObject *key, PyObject *fallback)
{
    PyObject *value = lookup(environ, key);
    if (value == NULL) {
        return fallback;
    }
    return PyUnicode_CheckExact(value) ? value : NULL;
}

/* A request without a trace header: the sampler decides.
 *   TRACE:    *out is the new unsampled trace (new reference)
 *   SERVED:   the sampler said yes and the Python entry served the request: *out is its
 *             result (NULL when the app raised: that propagates)
 *   FALLBACK: an unusual environ: the Python entry serves it whole (no error set)
 *   FAILED:   an internal error (set) */
enum { TRACE, SERVED, FALLBACK, FAILED };

static int
decide(Entry *self, PyObject *state, PyObject *const *args, PyObject **out)
{
    PyObject *environ = args[0];
    PyObject *method = environ_str(environ, s_method_key, s_get);
    PyObject *script = environ_str(environ, s_script_key, s_empty);
    PyObject *path_info = environ_str(environ, s_path_key, s_empty);
    PyObject *host = lookup(environ, s_host_key);
    if (host == NULL || (PyUnicode_CheckExact(host) && PyUnicode_GET_LENGTH(host) == 0)) {
        host = environ_str(environ, s_server_key, s_empty);
    } else if (!PyUnicode_CheckExact(host)) {
        host = NULL;
    }
    if (method == NULL || script == NULL || path_info == NULL || host == NULL) {
        return FALLBACK;
    }
    PyObject *path = PyUnicode_Concat(script, path_info);
    if (path == NULL) {
        return FAILED;
    }
    double now = wall_clock();
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
        Py_DECREF(path);
        return FAILED;
    }
    Py_DECREF(path);
    if (sampled) {
        PyObject *call[3] = {args[0], args[1], Py_True};
        *out = PyObject_Vectorcall(self->traced, call, 3, NULL);
        return SERVED;
    }
    PyObject *header = new_root_header(now);
    if (header == NULL) {
        return FAILED;
    }
    PyObject *trace_id = PyUnicode_Substring(header, 5, 40);
    *out = trace_id == NULL ? NULL : new_trace(trace_id, Py_None, header);
    Py_XDECREF(trace_id);
    Py_DECREF(header);
    return *out == NULL ? FAILED : TRACE;
}

/* A request whose header says Sampled=0, in the usual form: its trace (new reference). */
static PyObject *
continue_unsampled(PyObject *header)
{
    PyObject *trace_id = PyUnicode_Substring(header, 5, 40);
    PyObject *parent_id = PyUnicode_Substring(header, 48, 64);
    PyObject *response = PyUnicode_Substring(header, 0, 40);
    PyObject *trace = NULL;
    if (trace_id != NULL && parent_id != NULL && response != NULL) {
        trace = new_trace(trace_id, parent_id, response);
    }
    Py_XDECREF(trace_id);
    Py_XDECREF(parent_id);
    Py_XDECREF(response);
    return trace;
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
    PyObject *state = usable_state();
    if (state == NULL) {
        return PyObject_Vectorcall(self->traced, args, 2, NULL); /* off, or (re)configuring */
    }
    PyObject *trace = NULL;
    int outcome = TRACE;
    if (none) {
        outcome = decide(self, state, args, &trace);
    } else {
        trace = continue_unsampled(header);
        outcome = trace == NULL ? FAILED : TRACE;
    }
    Py_DECREF(state);
    if (outcome == SERVED) {
        return trace;
    }
    if (outcome == FALLBACK) {
        return PyObject_Vectorcall(self->traced, args, 2, NULL);
    }
    if (outcome == FAILED) {
        if (report(s_where_start) < 0) {
            return NULL;
        }
        return PyObject_Vectorcall(self->app, args, 2, NULL);
    }
    Responder *responder = PyObject_GC_New(Responder, &ResponderType);
    if (responder == NULL) {
        Py_DECREF(trace);
        if (report(s_where_start) < 0) {
            return NULL;
        }
        return PyObject_Vectorcall(self->app, args, 2, NULL);
    }
    responder->vectorcall = (vectorcallfunc)responder_call;
    Py_INCREF(args[1]);
    responder->start_response = args[1];
    responder->trace = trace;
    responder->header = PyObject_GetAttr(trace, s_response_header);
    responder->token = responder->header == NULL ? NULL : PyContextVar_Set(context_var, trace);
    responder->ready = 0;
    PyObject_GC_Track(responder);
    if (responder->token == NULL) {
        Py_DECREF(responder);
        if (report(s_where_start) < 0) {
            return NULL;
        }
        return PyObject_Vectorcall(self->app, args, 2, NULL);
    }

    PyObject *call[2] = {args[0], (PyObject *)responder};
    PyObject *result = PyObject_Vectorcall(self->app, call, 2, NULL);
    if (result == NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        untrace(responder);
        PyErr_Restore(type, value, tb);
    } else if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
        untrace(responder); /* the body is ready */
    } else if (!responder->ready && responder->token != NULL) {
        /* a body still to produce: the trace stays current until the server closes it */
        PyObject *body = NULL;
        if (PyObject_SetAttr(trace, s_token, responder->token) == 0) {
            PyObject *pair[2] = {trace, result};
            body = PyObject_Vectorcall(streaming_body, pair, 2, NULL);
        }
        if (body != NULL) {
            Py_CLEAR(responder->token); /* the body restores the context now */
            Py_SETREF(result, body);
        } else {
            /* the body as the app gave it; the context restored now */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            if (PyObject_SetAttr(trace, s_token, Py_None) < 0) {
                PyErr_Clear();
            }
            untrace(responder);
            PyErr_Restore(type, value, tb);
            if (report(s_where_end) < 0) {
                Py_DECREF(result);
                Py_DECREF(responder);
                return NULL;
            }
        }
    }
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
    .tp_dictoffset = offsetof(Entry, dict),
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
    static char *names[] = {"recorder_globals", "config_globals", "context_var", "unsampled_type",
                            "random_bits",      "streaming_body", "failed",      NULL};
    PyObject *recorder, *config, *var, *type, *bits, *body, *fail;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!OO!OOO:hooks", names, &PyDict_Type, &recorder,
                                     &PyDict_Type, &config, &var, &PyType_Type, &type, &bits, &body,
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
        intern(&s_script_key, "SCRIPT_NAME") < 0 || intern(&s_path_key, "PATH_INFO") < 0 ||
        intern(&s_host_key, "HTTP_HOST") < 0 || intern(&s_server_key, "SERVER_NAME") < 0 ||
        intern(&s_state, "_state") < 0 || intern(&s_current, "_current") < 0 ||
        intern(&s_config, "config") < 0 || intern(&s_enabled, "enabled") < 0 ||
        intern(&s_sampler, "sampler") < 0 || intern(&s_decide, "decide") < 0 ||
        intern(&s_trace_id, "trace_id") < 0 || intern(&s_parent_id, "parent_id") < 0 ||
        intern(&s_extra, "extra") < 0 || intern(&s_response_header, "response_header") < 0 ||
        intern(&s_token, "_token") < 0 || intern(&s_old_value, "old_value") < 0 ||
        intern(&s_missing, "MISSING") < 0 || intern(&s_get, "GET") < 0 || intern(&s_empty, "") < 0 ||
        intern(&s_header_name, "X-Amzn-Trace-Id") < 0 || intern(&s_where_start, "wsgi.start") < 0 ||
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
