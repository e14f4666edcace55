"""The gateway's limits on hostile input, and bounded echoes of what a client sent.

Every limit answers with a typed 4xx (never a 500), and no error message repeats an unbounded value: a value is
shown through :func:`show` (its ``repr``, so control characters and lone surrogates are escaped, cut to
``ECHO_CHARS``), a list of names through :func:`show_names`.
"""
from __future__ import annotations

import re
from typing import Any

#: Largest request body, in bytes (checked while streaming; a larger Content-Length is refused at once).
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Deepest JSON nesting a request may have (a valid one never goes beyond 3).
MAX_DEPTH = 32
#: Longest row id (the spec's id column), and longest string feature value.
MAX_ID_CHARS = 128
MAX_STRING_CHARS = 256
#: Longest feedback request id (the gateway's own are 32 hex characters), and longest admin ``reason``.
MAX_REQUEST_ID_CHARS = 128
MAX_REASON_CHARS = 500
#: How much of a client's value an error message repeats, and of a list of names.
ECHO_CHARS = 64
ECHO_NAMES = 5
#: Longest error message the gateway answers (a last guard; messages are built bounded).
MAX_ERROR_CHARS = 512

#: A version id: a positive integer in plain ASCII digits (no sign, leading zero, decimal point or other
#: script's digits: ``str.isdigit`` accepts ``"٣"``).
VERSION_ID = re.compile(r"[1-9][0-9]{0,17}")
#: A plain decimal number (the stats endpoint's ``since``): ASCII only, so ``float`` never sees ``"٣"`` or ``"1_0"``.
PLAIN_NUMBER = re.compile(r"[-+]?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?")


def cut(text: str, limit: int = ECHO_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def show(value: Any, limit: int = ECHO_CHARS) -> str:
    """A bounded, printable rendering of a client's value for an error message (containers by type and size:
    their ``repr`` could be megabytes, or recurse a thousand levels)."""
    if isinstance(value, dict | list):
        return f"{type(value).__name__} of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, str):
        text = repr(value[:limit])
        return cut(text[:-1] + "…" if len(value) > limit else text, limit + 2)
    return cut(repr(value), limit)


def show_names(names: Any) -> str:
    """A bounded rendering of a list of client-chosen names: at most ``ECHO_NAMES``, each cut."""
    names = list(names)
    shown = ", ".join(show(n) for n in names[:ECHO_NAMES])
    more = f", … ({len(names)} in all)" if len(names) > ECHO_NAMES else ""
    return f"[{shown}{more}]"


def too_deep(data: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``data`` nests containers deeper than ``limit`` (iterative: no recursion to blow up)."""
    if not isinstance(data, dict | list):
        return False
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False
