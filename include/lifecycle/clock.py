"""Time as the project writes and reads it: ISO 8601 in UTC, with a ``Z``."""
from __future__ import annotations

import datetime as dt


def utcnow_iso() -> str:
    """Now, as the ledger and the logs stamp it: ``2026-01-07T13:05:09.123Z``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(text: str) -> dt.datetime:
    """An ISO 8601 time as an aware UTC datetime: ``Z`` (or ``z``) and any offset accepted, converted to UTC; a
    time without an offset is taken as UTC (the project writes nothing else). Raises :class:`ValueError` naming
    the value when it is not an ISO 8601 time (or not a string)."""
    if not isinstance(text, str):
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
