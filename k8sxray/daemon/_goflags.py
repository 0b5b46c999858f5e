"""Command lines written for AWS's Go daemon, rewritten into the form argparse reads.

Go's ``flag`` package accepts every flag with one dash or two (``-region``, ``--region``, ``-n``,
``--n``), its value as the next argument or after ``=`` (``-region us-east-1``, ``-region=us-east-1``),
and booleans bare or with an explicit value (``-local-mode``, ``-local-mode=false``; true and false as
``1 t T TRUE true True`` and ``0 f F FALSE false False``). Manifests written for that daemon use these
spellings, so :func:`normalize` turns each known flag into ``--long-name=value``: a value that starts
with a dash then stays a value, and a bare boolean never swallows the argument after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def boolean(text: str) -> bool:
    """A boolean flag's value as Go's ``strconv.ParseBool`` reads it; ValueError otherwise."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def normalize(
    argv: Sequence[str],
    long_names: Mapping[str, str],
    kinds: Mapping[str, str],
) -> list[str]:
    """``argv`` with every known flag as ``--long-name=value`` (or bare ``--long-name`` for actions).

    ``long_names`` maps each accepted name (without dashes: ``n``, ``region``) to its long name;
    ``kinds`` maps a long name to ``"value"``, ``"bool"`` (written ``--name=true|false``) or
    ``"action"`` (``--help``, ``--version``: given bare when true, left out when false). Unknown
    arguments, and everything after ``--``, are passed on unchanged for argparse to refuse.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            out.extend(argv[i - 1 :])
            break
        dashes = len(arg) - len(arg.lstrip("-"))
        name, eq, value = arg[dashes:].partition("=")
        long = long_names.get(name) if dashes in (1, 2) else None
        if long is None:
            out.append(arg)
            continue
        kind = kinds[long]
        if kind == "value":
            if not eq:
                if i >= len(argv):
                    out.append(f"--{long}")  # argparse says the value is missing
                    continue
                value = argv[i]
                i += 1
            out.append(f"--{long}={value}")
        elif kind == "bool":
            out.append(f"--{long}={value if eq else 'true'}")
        elif not eq:
            out.append(f"--{long}")
        else:
            try:
                if boolean(value):
                    out.append(f"--{long}")
            except ValueError:
                out.append(arg)  # argparse says "ignored explicit argument"
    return out
