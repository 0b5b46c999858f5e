"""X-Ray's filter-expression grammar, evaluated on a trace's facts (:mod:`k8sxray.console.trace`).

:func:`compile_filter` parses an expression once (a small tokenizer and a recursive-descent parser)
into a :class:`Filter`: a predicate over a facts record (a few microseconds a call) and hints the
store can turn into an SQL prefilter (:attr:`Filter.services`, :attr:`Filter.duration`,
:attr:`Filter.response_time`). Whatever cannot be evaluated exactly (an unknown keyword, an operator
the keyword's type has not, a keyword not available where it is used, bad syntax, X-Ray groups) raises
:class:`FilterError` naming the position, never a silently wrong answer.

The grammar, after AWS's "Using filter expressions"::

    expr       := and ("OR" and)*
    and        := unary (["AND"] unary)*        # terms side by side are joined by AND: ``ok !partial``
    unary      := "!" unary | "(" expr ")" | term
    term       := keyword [op value]
                | "service" "(" [selector] ")" ["{" expr "}"]
                | "edge" "(" selector "," selector ")" ["{" expr "}"]
                | "rootcause." ("fault"|"error") "." ("service"|"entity"|"exception") ["{" expr "}"]
    selector   := STRING | "id" "(" ("name"|"type"|"account.id") ":" STRING ("," ...)* ")"

Keywords: boolean ``ok error throttle fault partial inferred first last remote root`` (bare, ``!``,
``= true``/``= false``, ``!=``); number ``responsetime duration http.status index`` (``= != < <= > >=``);
string ``http.url http.method http.useragent http.clientip user name type message availabilityzone
instance.id resource.arn`` (``= != CONTAINS BEGINSWITH ENDSWITH``, double-quoted values, ``\\"`` and
``\\\\`` escapes); ``annotation.KEY`` or ``annotation[KEY]`` (bare: present; compared with a number, a
string or ``true``/``false``, only values of that type count).

Meaning, per scope:

- at the top level a keyword is about the trace: ``ok``/``error``/``fault`` and ``http.*`` are the entry
  (root) segment's, ``throttle`` any segment's, ``responsetime`` the entry segment's, ``duration`` the
  whole trace's, ``user``/``annotation``/``name``/``type``/``message``/``availabilityzone``/
  ``instance.id``/``resource.arn`` match any value in the trace, ``inferred``: the trace has an
  inferred node;
- inside ``service(...) {...}`` a keyword is about one node (a segment, or an inferred downstream call)
  of that service, and the term holds when some node of the trace matches (``root``, ``inferred``,
  ``name``, ``type`` are the node's); ``service()`` is any node; ``!service("a")``: no node of ``a``;
- inside ``edge("a", "b") {...}``: one call from ``a`` to ``b``, timed and flagged by the caller
  (``ok error throttle fault responsetime duration``);
- inside ``rootcause.fault.service`` / ``.entity`` / ``.exception``: one root-cause service
  (``name type inferred``), entity (``name remote``) or exception (``name message``), with ``first``,
  ``last`` and ``index`` giving its place in its list.

Case: keywords, ``AND``/``OR``, the string operators and ``true``/``false`` are read in any case;
string values and annotation keys are compared exactly. A comparison with a value the trace does not
have is false whatever the operator, so ``user != "a"`` needs a user; ``!(user = "a")`` does not.
Not available locally, with a clear error: ``group.name``/``group.arn`` (X-Ray groups live in AWS),
``rootcause.responsetime`` and ``coverage`` (no response-time analysis), ``account.id`` in ``id()``
(no accounts here), and any keyword where its scope has no such value (``partial`` inside
``service()``, ``annotation`` inside ``edge()``...).
"""

from __future__ import annotations

import functools
import logging
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .trace import CLIENT, ERROR, FAULT, THROTTLE

logger = logging.getLogger(__name__)

MAX_LENGTH = 4096
"""Longest expression accepted."""
MAX_DEPTH = 32
"""Deepest nesting of parentheses, braces and ``!`` accepted."""

Predicate = Callable[[Any], bool]


class FilterError(ValueError):
    """A filter expression that cannot be evaluated here; ``position`` is its 0-based character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})")
        self.position = position


class _Token(NamedTuple):
    kind: str  # "string", "number", "op", "word", "end"
    text: str
    pos: int
    value: Any = None


_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<number>-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<op><=|>=|!=|=|<|>|!|\(|\)|\{|\}|,|:|\[|\])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    """,
    re.VERBOSE | re.DOTALL,
)
_SPACE = re.compile(r"\s*")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def tokenize(text: str) -> list[_Token]:
    """The tokens of ``text`` and an ``end`` token; raises :class:`FilterError` on a stray character."""
    tokens: list[_Token] = []
    pos = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos] == '"':
                raise FilterError("unterminated string", pos)
            raise FilterError(f"unexpected character {text[pos]!r}", pos)
        kind = match.lastgroup or ""
        raw = match.group()
        value: Any = None
        if kind == "string":
            value = _ESCAPE.sub(r"\1", raw[1:-1])
        elif kind == "number":
            value = float(raw)
        tokens.append(_Token(kind, raw, pos, value))
        pos = _SPACE.match(text, match.end()).end()  # type: ignore[union-attr]
    tokens.append(_Token("end", "", len(text)))
    return tokens


# ---- the syntax tree -------------------------------------------------------------------------------


class _Cmp(NamedTuple):
    keyword: str  # lowercased; annotations as "annotation", with key
    key: str | None
    op: str | None  # None for a bare keyword; "=", "!=", "<", ..., "contains", "beginswith", "endswith"
    value: Any
    pos: int


class _Service(NamedTuple):
    name: str | None
    type: str | None
    inner: Any
    pos: int


class _Edge(NamedTuple):
    source: tuple[str | None, str | None]
    target: tuple[str | None, str | None]
    inner: Any
    pos: int


class _RootCause(NamedTuple):
    kind: str  # "fault" or "error"
    level: str  # "service", "entity", "exception"
    inner: Any
    pos: int


class _Bool(NamedTuple):
    op: str  # "and", "or", "not"
    parts: tuple[Any, ...]


_STRING_OPS = ("contains", "beginswith", "endswith")
_COMPARE_OPS = ("=", "!=", "<", "<=", ">", ">=")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def word(self, token: _Token | None = None) -> str:
        token = token or self.tok
        return token.text.lower() if token.kind == "word" else ""

    def expect(self, text: str) -> _Token:
        token = self.take()
        if token.text != text:
            raise FilterError(f"expected {text!r}, found {_describe(token)}", token.pos)
        return token

    def nest(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"the expression nests deeper than {MAX_DEPTH} levels", pos)

    def parse(self) -> Any:
        if self.tok.kind == "end":
            return None
        tree = self.expr()
        if self.tok.kind != "end":
            raise FilterError(f"unexpected {_describe(self.tok)}", self.tok.pos)
        return tree

    def expr(self) -> Any:
        parts = [self.conjunction()]
        while self.word() == "or":
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else _Bool("or", tuple(parts))

    def conjunction(self) -> Any:
        parts = [self.unary()]
        while True:
            if self.word() == "and":
                self.take()
            elif not self.starts_term():
                break
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else _Bool("and", tuple(parts))

    def starts_term(self) -> bool:
        token = self.tok
        return token.text in ("!", "(") or (token.kind == "word" and self.word() not in ("or", "and"))

    def unary(self) -> Any:
        token = self.tok
        if token.text == "!":
            self.take()
            self.nest(token.pos)
            inner = self.unary()
            self.depth -= 1
            return _Bool("not", (inner,))
        if token.text == "(":
            self.take()
            self.nest(token.pos)
            inner = self.expr()
            self.expect(")")
            self.depth -= 1
            return inner
        return self.term()

    def block(self) -> Any:
        """An optional ``{ expr }``; None when absent."""
        if self.tok.text != "{":
            return None
        start = self.take()
        self.nest(start.pos)
        if self.tok.text == "}":
            raise FilterError("an empty {} filter", start.pos)
        inner = self.expr()
        self.expect("}")
        self.depth -= 1
        return inner

    def term(self) -> Any:
        token = self.take()
        word = self.word(token)
        if not word or word in ("and", "or"):
            raise FilterError(f"expected a keyword, found {_describe(token)}", token.pos)
        if word == "service" and self.tok.text == "(":
            self.take()
            name: str | None = None
            type_: str | None = None
            if self.tok.text != ")":
                name, type_ = self.selector()
            self.expect(")")
            return _Service(name, type_, self.block(), token.pos)
        if word == "edge" and self.tok.text == "(":
            self.take()
            source = self.selector()
            self.expect(",")
            target = self.selector()
            self.expect(")")
            return _Edge(source, target, self.block(), token.pos)
        if word.startswith("rootcause."):
            return self.rootcause(token)
        if word.startswith("group.") or word == "group":
            raise FilterError(
                f"{token.text!r}: X-Ray groups live in AWS, the local console has none (filter directly)",
                token.pos,
            )
        key = None
        if word == "annotation" and self.tok.text == "[":
            self.take()
            key_token = self.take()
            if key_token.kind not in ("word", "string"):
                raise FilterError(f"expected an annotation key, found {_describe(key_token)}", key_token.pos)
            key = key_token.value if key_token.kind == "string" else key_token.text
            self.expect("]")
        elif word.startswith("annotation."):
            key = token.text[len("annotation.") :]
            word = "annotation"
        elif word not in _KEYWORDS:
            raise FilterError(f"unknown keyword {token.text!r}", token.pos)
        op = self.operator()
        value = None
        if op is not None:
            value = self.value()
        return _Cmp(word, key, op, value, token.pos)

    def operator(self) -> str | None:
        token = self.tok
        if token.kind == "op" and token.text in _COMPARE_OPS:
            self.take()
            return token.text
        if self.word() in _STRING_OPS:
            self.take()
            return self.word(token)
        return None

    def value(self) -> _Token:
        token = self.take()
        if token.kind in ("string", "number") or self.word(token) in ("true", "false"):
            return token
        raise FilterError(
            f"expected a value (a number, a quoted string, true or false), found {_describe(token)}",
            token.pos,
        )

    def selector(self) -> tuple[str | None, str | None]:
        token = self.take()
        if token.kind == "string":
            return token.value, None
        if self.word(token) != "id" or self.tok.text != "(":
            raise FilterError(
                f"expected a quoted service name or id(...), found {_describe(token)}", token.pos
            )
        self.take()
        fields: dict[str, str] = {}
        while True:
            key = self.take()
            name = self.word(key)
            if name not in ("name", "type", "account.id"):
                raise FilterError(f"id() takes name, type and account.id, found {_describe(key)}", key.pos)
            self.expect(":")
            value = self.take()
            if value.kind != "string":
                raise FilterError(
                    f"id() needs a quoted string for {name}, found {_describe(value)}", value.pos
                )
            if name == "account.id":
                raise FilterError("id(account.id: ...): the local console keeps no account ids", key.pos)
            fields[name] = value.value
            if self.tok.text != ",":
                break
            self.take()
        self.expect(")")
        if not fields:
            raise FilterError("id() needs a name or a type", token.pos)
        return fields.get("name"), fields.get("type")

    def rootcause(self, token: _Token) -> _RootCause:
        parts = token.text.lower().split(".")
        if len(parts) == 3 and parts[1] == "responsetime":
            raise FilterError(
                "rootcause.responsetime: the local console does no response-time analysis", token.pos
            )
        if (
            len(parts) != 3
            or parts[1] not in ("fault", "error")
            or parts[2] not in ("service", "entity", "exception")
        ):
            raise FilterError(
                f"unknown keyword {token.text!r} (rootcause.fault|error.service|entity|exception)", token.pos
            )
        return _RootCause(parts[1], parts[2], self.block(), token.pos)


def _describe(token: _Token) -> str:
    return "the end of the expression" if token.kind == "end" else repr(token.text)


# ---- what each keyword reads, per scope ------------------------------------------------------------
# Scopes: "trace" (a facts record), "node" ((node row, node info)), "edge" (an edge row),
# "rc.service" / "rc.entity" / "rc.exception" ((root-cause dict, index, count)).

_KEYWORDS = {
    "ok": "bool",
    "error": "bool",
    "throttle": "bool",
    "fault": "bool",
    "partial": "bool",
    "inferred": "bool",
    "first": "bool",
    "last": "bool",
    "remote": "bool",
    "root": "bool",
    "responsetime": "number",
    "duration": "number",
    "http.status": "number",
    "index": "number",
    "coverage": "number",
    "http.url": "string",
    "http.method": "string",
    "http.useragent": "string",
    "http.clientip": "string",
    "user": "string",
    "name": "string",
    "type": "string",
    "message": "string",
    "availabilityzone": "string",
    "instance.id": "string",
    "resource.arn": "string",
}

_HTTP_FIELD = {"http.url": 0, "http.method": 1, "http.status": 2, "http.useragent": 3, "http.clientip": 4}


def _flag_reader(bit: int, at: Callable[[Any], int]) -> Callable[[Any], bool]:
    if bit == 0:
        return lambda ctx: at(ctx) == 0
    return lambda ctx: bool(at(ctx) & bit)


_FLAG_BITS = {"ok": 0, "error": ERROR, "throttle": THROTTLE, "fault": FAULT}


def _strings(values: Sequence[Any]) -> list[str]:
    return [v for v in values if isinstance(v, str)]


def _trace_reader(keyword: str) -> Callable[[Any], Any] | None:
    if keyword == "ok":  # the entry segment's status: a throttle further down does not spoil it
        return lambda f: not f["flags"] & (ERROR | FAULT)
    if keyword in _FLAG_BITS:
        return _flag_reader(_FLAG_BITS[keyword], operator.itemgetter("flags"))
    if keyword in _HTTP_FIELD:
        field = _HTTP_FIELD[keyword]
        if keyword == "http.status":
            return lambda f: f["http"][field]
        return lambda f: _strings([f["http"][field]])
    readers: dict[str, Callable[[Any], Any]] = {
        "partial": lambda f: bool(f["partial"]),
        "inferred": lambda f: any(n[8] for n in f["nodes"]),
        "responsetime": operator.itemgetter("response_time"),
        "duration": operator.itemgetter("duration"),
        "user": lambda f: [u[0] for u in f["users"]],
        "name": lambda f: [s[0] for s in f["services"]] + [x for i in f["node_info"] for x in i.get("x", ())],
        "type": lambda f: [s[1] for s in f["services"] if s[1]],
        "message": lambda f: [m for i in f["node_info"] for m in i.get("m", ())],
        "availabilityzone": operator.itemgetter("azs"),
        "instance.id": operator.itemgetter("instance_ids"),
        "resource.arn": operator.itemgetter("arns"),
    }
    return readers.get(keyword)


def _node_reader(keyword: str) -> Callable[[Any], Any] | None:
    if keyword in _FLAG_BITS:
        return _flag_reader(_FLAG_BITS[keyword], lambda ctx: ctx[0][6])
    if keyword in _HTTP_FIELD:
        field = _HTTP_FIELD[keyword]
        if keyword == "http.status":
            return lambda ctx: ctx[1]["h"][field] if "h" in ctx[1] else None
        return lambda ctx: _strings([ctx[1]["h"][field]]) if "h" in ctx[1] else []
    readers: dict[str, Callable[[Any], Any]] = {
        "inferred": lambda ctx: bool(ctx[0][8]),
        "root": lambda ctx: bool(ctx[0][7]),
        "responsetime": lambda ctx: ctx[0][4],
        "duration": lambda ctx: ctx[0][4],
        "user": lambda ctx: [ctx[1]["u"]] if "u" in ctx[1] else [],
        "name": lambda ctx: [ctx[0][0]],
        "type": lambda ctx: [ctx[0][1]] if ctx[0][1] else [],
        "message": lambda ctx: ctx[1].get("m", []),
        "availabilityzone": lambda ctx: [ctx[1]["az"]] if "az" in ctx[1] else [],
        "instance.id": lambda ctx: [ctx[1]["iid"]] if "iid" in ctx[1] else [],
        "resource.arn": lambda ctx: [ctx[1]["arn"]] if "arn" in ctx[1] else [],
    }
    return readers.get(keyword)


def _edge_reader(keyword: str) -> Callable[[Any], Any] | None:
    if keyword in _FLAG_BITS:
        return _flag_reader(_FLAG_BITS[keyword], operator.itemgetter(7))
    if keyword in ("responsetime", "duration"):
        return operator.itemgetter(6)
    return None


def _place_reader(keyword: str) -> Callable[[Any], Any] | None:
    places: dict[str, Callable[[Any], Any]] = {
        "first": lambda ctx: ctx[1] == 0,
        "last": lambda ctx: ctx[1] == ctx[2] - 1,
        "index": lambda ctx: float(ctx[1]),
    }
    return places.get(keyword)


def _rc_reader(level: str, keyword: str) -> Callable[[Any], Any] | None:
    place = _place_reader(keyword)
    if place is not None:
        return place
    fields = {
        "rc.service": {"name": "Name", "type": "Type", "inferred": "Inferred"},
        "rc.entity": {"name": "Name", "remote": "Remote"},
        "rc.exception": {"name": "Name", "message": "Message"},
    }[level]
    field = fields.get(keyword)
    if field is None:
        return None
    if _KEYWORDS[keyword] == "bool":
        return lambda ctx: bool(ctx[0].get(field))
    return lambda ctx: _strings([ctx[0].get(field)])


def _reader(scope: str, keyword: str) -> Callable[[Any], Any] | None:
    if scope == "trace":
        return _trace_reader(keyword)
    if scope == "node":
        return _node_reader(keyword)
    if scope == "edge":
        return _edge_reader(keyword)
    return _rc_reader(scope, keyword)


def _annotation_reader(scope: str, key: str, pos: int) -> Callable[[Any], list[Any]]:
    if scope == "trace":
        return lambda f: [v[0] for v in f["annotations"].get(key, ())]
    if scope == "node":
        return lambda ctx: [ctx[1]["a"][key]] if key in ctx[1].get("a", ()) else []
    raise FilterError(f"annotation.{key} is not available inside {_SCOPE_NAMES[scope]}", pos)


_SCOPE_NAMES = {
    "trace": "a trace",
    "node": "service()",
    "edge": "edge()",
    "rc.service": "rootcause.*.service",
    "rc.entity": "rootcause.*.entity",
    "rc.exception": "rootcause.*.exception",
}

_NUMBER_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_TEXT_OPS: dict[str, Callable[[str, str], bool]] = {
    "=": operator.eq,
    "contains": operator.contains,
    "beginswith": str.startswith,
    "endswith": str.endswith,
}


# ---- compiling the tree to closures ----------------------------------------------------------------


def _compile_bool_op(tree: _Bool, scope: str) -> Predicate:
    parts = [_compile(p, scope) for p in tree.parts]
    if tree.op == "not":
        inner = parts[0]
        return lambda ctx: not inner(ctx)
    if tree.op == "and":
        return lambda ctx: all(p(ctx) for p in parts)
    return lambda ctx: any(p(ctx) for p in parts)


def _compile(tree: Any, scope: str) -> Predicate:
    if isinstance(tree, _Bool):
        return _compile_bool_op(tree, scope)
    if isinstance(tree, _Cmp):
        return _compile_cmp(tree, scope)
    if isinstance(tree, _Service):
        return _compile_service(tree, scope)
    if isinstance(tree, _Edge):
        return _compile_edge(tree, scope)
    return _compile_rootcause(tree, scope)


def _compile_service(tree: _Service, scope: str) -> Predicate:
    if scope != "trace":
        raise FilterError(f"service() cannot be used inside {_SCOPE_NAMES[scope]}", tree.pos)
    name, type_ = tree.name, tree.type
    inner = _compile(tree.inner, "node") if tree.inner is not None else None

    def matches(facts: Any) -> bool:
        info = facts["node_info"]
        for index, row in enumerate(facts["nodes"]):
            if name is not None and row[0] != name:
                continue
            if type_ is not None and row[1] != type_:
                continue
            if inner is None or inner((row, info[index])):
                return True
        return False

    return matches


def _compile_edge(tree: _Edge, scope: str) -> Predicate:
    if scope != "trace":
        raise FilterError(f"edge() cannot be used inside {_SCOPE_NAMES[scope]}", tree.pos)
    (src_name, src_type), (dst_name, dst_type) = tree.source, tree.target
    inner = _compile(tree.inner, "edge") if tree.inner is not None else None

    def matches(facts: Any) -> bool:
        for row in facts["edges"]:
            if src_name is not None and row[0] != src_name:
                continue
            if (row[1] == CLIENT and src_type != CLIENT) or (src_type is not None and row[1] != src_type):
                continue
            if dst_name is not None and row[2] != dst_name:
                continue
            if dst_type is not None and row[3] != dst_type:
                continue
            if inner is None or inner(row):
                return True
        return False

    return matches


def _compile_rootcause(tree: _RootCause, scope: str) -> Predicate:
    if scope != "trace":
        raise FilterError(f"{tree.kind} root causes cannot be used inside {_SCOPE_NAMES[scope]}", tree.pos)
    field = f"{tree.kind}_root_causes"
    level = tree.level
    inner = _compile(tree.inner, f"rc.{level}") if tree.inner is not None else (lambda ctx: True)

    def matches(facts: Any) -> bool:
        for cause in facts[field]:
            services = cause["Services"]
            for s_index, service in enumerate(services):
                if level == "service":
                    if inner((service, s_index, len(services))):
                        return True
                    continue
                path = service.get("EntityPath", [])
                for e_index, entity in enumerate(path):
                    if level == "entity":
                        if inner((entity, e_index, len(path))):
                            return True
                        continue
                    excs = entity.get("Exceptions", [])
                    if any(inner((exc, x_index, len(excs))) for x_index, exc in enumerate(excs)):
                        return True
        return False

    return matches


def _compile_cmp(tree: _Cmp, scope: str) -> Predicate:
    if tree.keyword == "annotation":
        return _compile_annotation(tree, scope)
    kind = _KEYWORDS[tree.keyword]
    if tree.keyword == "coverage":
        raise FilterError("coverage: the local console does no response-time analysis", tree.pos)
    read = _reader(scope, tree.keyword)
    if read is None:
        raise FilterError(f"{tree.keyword!r} is not available in {_SCOPE_NAMES[scope]}", tree.pos)
    op, token = tree.op, tree.value
    if kind == "bool":
        return _compile_bool(tree, read)
    if op is None:
        raise FilterError(f"{tree.keyword!r} needs an operator and a value", tree.pos)
    if kind == "number":
        if op not in _NUMBER_OPS or token.kind != "number":
            raise FilterError(f"{tree.keyword!r} is compared with = != < <= > >= and a number", token.pos)
        compare = _NUMBER_OPS[op]
        number = token.value

        def number_matches(ctx: Any) -> bool:
            value = read(ctx)
            return value is not None and compare(value, number)

        return number_matches
    if token.kind != "string" or op in ("<", "<=", ">", ">="):
        raise FilterError(
            f"{tree.keyword!r} is compared with = != CONTAINS BEGINSWITH ENDSWITH and a quoted string",
            token.pos,
        )
    return _text_predicate(read, op, token.value)


def _compile_bool(tree: _Cmp, read: Callable[[Any], Any]) -> Predicate:
    if tree.op is None:
        return lambda ctx: bool(read(ctx))
    token = tree.value
    if tree.op not in ("=", "!=") or token.kind != "word":
        raise FilterError(
            f"{tree.keyword!r} is a boolean: use it bare, with !, or = / != true or false", tree.pos
        )
    want = (token.text.lower() == "true") == (tree.op == "=")
    return lambda ctx: bool(read(ctx)) == want


def _text_predicate(read: Callable[[Any], list[Any]], op: str, text: str) -> Predicate:
    if op == "!=":

        def differs(ctx: Any) -> bool:
            values = read(ctx)
            return bool(values) and all(v != text for v in values)

        return differs
    compare = _TEXT_OPS[op]
    return lambda ctx: any(compare(v, text) for v in read(ctx))


def _compile_annotation(tree: _Cmp, scope: str) -> Predicate:
    key = tree.key or ""
    if not key:
        raise FilterError("annotation needs a key: annotation.KEY or annotation[KEY]", tree.pos)
    read_all = _annotation_reader(scope, key, tree.pos)
    op, token = tree.op, tree.value
    if op is None:
        return lambda ctx: bool(read_all(ctx))
    if token.kind == "number":
        if op not in _NUMBER_OPS:
            raise FilterError(f"a number annotation is compared with = != < <= > >=, not {op}", token.pos)
        compare = _NUMBER_OPS[op]
        number = token.value

        def numbers(ctx: Any) -> list[float]:
            return [v for v in read_all(ctx) if isinstance(v, (int, float)) and not isinstance(v, bool)]

        if op == "!=":
            return lambda ctx: bool(values := numbers(ctx)) and all(v != number for v in values)
        return lambda ctx: any(compare(v, number) for v in numbers(ctx))
    if token.kind == "string":
        if op not in _TEXT_OPS and op != "!=":
            raise FilterError(
                f"a string annotation is compared with = != CONTAINS BEGINSWITH ENDSWITH, not {op}", token.pos
            )
        return _text_predicate(lambda ctx: _strings(read_all(ctx)), op, token.value)
    if op not in ("=", "!="):
        raise FilterError(f"a boolean annotation is compared with = or !=, not {op}", token.pos)
    want = token.text.lower() == "true"

    def booleans(ctx: Any) -> list[bool]:
        return [v for v in read_all(ctx) if isinstance(v, bool)]

    if op == "=":
        return lambda ctx: want in booleans(ctx)
    return lambda ctx: bool(values := booleans(ctx)) and want not in values


# ---- hints for the store's prefilter ---------------------------------------------------------------


def _required(tree: Any) -> frozenset[str] | None:
    """Service names every matching trace has a node of (None: no such guarantee)."""
    if isinstance(tree, _Service):
        return frozenset([tree.name]) if tree.name is not None else None
    if isinstance(tree, _Edge):
        ends = [tree.target] if tree.source[1] == CLIENT else [tree.source, tree.target]  # client: no node
        return frozenset(name for name, _ in ends if name is not None) or None
    if isinstance(tree, _Bool) and tree.op == "and":
        found = [r for r in map(_required, tree.parts) if r is not None]
        return frozenset().union(*found) if found else None
    if isinstance(tree, _Bool) and tree.op == "or":
        each = [_required(p) for p in tree.parts]
        if any(r is None for r in each):
            return None
        common = frozenset.intersection(*each)  # type: ignore[arg-type]
        return common or None
    return None


def _bounds(tree: Any, keyword: str) -> tuple[float | None, float | None]:
    """Inclusive bounds a trace-level ``keyword`` must be within for a match (conservative)."""
    low: float | None = None
    high: float | None = None
    terms = tree.parts if isinstance(tree, _Bool) and tree.op == "and" else (tree,)
    for term in terms:
        if not isinstance(term, _Cmp) or term.keyword != keyword or term.op is None:
            continue
        value = term.value.value
        if term.op in (">", ">=", "="):
            low = value if low is None else max(low, value)
        if term.op in ("<", "<=", "="):
            high = value if high is None else min(high, value)
    return low, high


@dataclass(frozen=True)
class Filter:
    """A compiled filter expression.

    ``matches(facts)`` says whether a trace matches. The hints are for a prefilter that may let
    extra traces through but never drops a match: ``services`` are names a matching trace has a
    node of (every one of them), ``duration`` and ``response_time`` inclusive ``(low, high)`` bounds
    (None: unbounded) on the facts' ``duration`` and ``response_time``.
    """

    expression: str
    matches: Predicate
    services: frozenset[str] | None
    duration: tuple[float | None, float | None]
    response_time: tuple[float | None, float | None]


def _everything(facts: Any) -> bool:
    return True


@functools.lru_cache(maxsize=256)
def compile_filter(expression: str) -> Filter:
    """Parse and compile ``expression`` (an empty one matches every trace); raises :class:`FilterError`."""
    if not isinstance(expression, str):
        raise FilterError("a filter expression is a string", 0)
    if len(expression) > MAX_LENGTH:
        raise FilterError(f"the expression is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    tree = _Parser(expression).parse()
    if tree is None:
        return Filter(expression, _everything, None, (None, None), (None, None))
    return Filter(
        expression,
        _compile(tree, "trace"),
        _required(tree),
        _bounds(tree, "duration"),
        _bounds(tree, "responsetime"),
    )


def required_services(expression: str) -> set[str] | None:
    """Service names a trace must have a node of to match ``expression`` (None: no such guarantee)."""
    services = compile_filter(expression).services
    return None if services is None else set(services)


def matches(expression: str, facts: Mapping[str, Any]) -> bool:
    """Whether the trace with these facts matches ``expression`` (compiled once and cached)."""
    return compile_filter(expression).matches(facts)


class EntitySelector(NamedTuple):
    """What ``GetTimeSeriesServiceStatistics``' ``EntitySelectorExpression`` names.

    ``kind`` is ``"service"`` (``target`` is None) or ``"edge"``; each end is ``(name, type)``, either
    part None when not given.
    """

    kind: str
    source: tuple[str | None, str | None]
    target: tuple[str | None, str | None] | None


def parse_entity_selector(expression: str) -> EntitySelector:
    """``service("a")``, ``service(id(name: "a", type: "t"))`` or ``edge(..., ...)``, with no inner filter.

    Raises :class:`FilterError` for anything else.
    """
    if len(expression) > MAX_LENGTH:
        raise FilterError(f"the expression is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    tree = _Parser(expression).parse()
    if isinstance(tree, _Service) and tree.inner is None and (tree.name, tree.type) != (None, None):
        return EntitySelector("service", (tree.name, tree.type), None)
    if isinstance(tree, _Edge) and tree.inner is None:
        return EntitySelector("edge", tree.source, tree.target)
    raise FilterError('an entity selector is service("name"), service(id(...)) or edge(a, b), alone', 0)
