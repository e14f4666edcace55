"""Traffic weights per model version, persisted in the lifecycle DB so a restarted gateway comes back with the
same weights (SQLite, or PostgreSQL when ``$LIFECYCLE_DB_URL`` is set: see :mod:`lifecycle.db`). Every change is
validated as a whole and written in one transaction, and appended to a history table (what the canary did, and
when)."""
from __future__ import annotations

import json

from lifecycle import db
from lifecycle.errors import ConflictError, InvalidRequestError
from lifecycle.ledger import utcnow_iso
from lifecycle.serving.limits import VERSION_ID, show

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traffic (
    model      TEXT NOT NULL,
    version    TEXT NOT NULL,
    weight     INTEGER NOT NULL CHECK (weight BETWEEN 0 AND 100),
    loaded     INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS traffic_history (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    model   TEXT NOT NULL,
    at      TEXT NOT NULL,
    weights TEXT NOT NULL,
    reason  TEXT NOT NULL
);
"""
_PG_SCHEMA = _SCHEMA.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")


class TrafficError(InvalidRequestError, ValueError):
    """A traffic change that cannot be applied; nothing was changed (HTTP 422)."""


class WeightHeldError(ConflictError, TrafficError):
    """Unloading a version that still has weight: move its traffic first (HTTP 409; still a ``TrafficError``)."""


def check_weights(weights: dict[str, int]) -> dict[str, int]:
    """The checks that need no state: a non-empty object of version ids (positive integers in plain ASCII digits)
    to integer percents in [0, 100]; messages echo at most ``ECHO_CHARS`` of a bad id or weight."""
    if not isinstance(weights, dict) or not weights:
        raise TrafficError("weights must be a non-empty object {version: percent}")
    for version, weight in weights.items():
        if not isinstance(version, str) or not VERSION_ID.fullmatch(version):
            raise TrafficError(f"version {show(version)} must be a positive integer in plain ASCII digits (no sign, "
                               "leading zero or decimal point)")
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise TrafficError(f"weight of version {version} must be an integer percent, got {show(weight)}")
        if not 0 <= weight <= 100:
            raise TrafficError(f"weight of version {version} must be between 0 and 100, got {weight}")
    return weights


def validate_weights(weights: dict[str, int], loaded: set[str]) -> dict[str, int]:
    """Weights must be integers in [0, 100] summing to 100, over loaded versions only."""
    weights = check_weights({str(k): v for k, v in weights.items()} if isinstance(weights, dict) else weights)
    clean: dict[str, int] = {}
    for version, weight in weights.items():
        if version not in loaded:
            raise TrafficError(f"version {version} is not loaded in the gateway (loaded: {sorted(loaded) or 'none'})")
        clean[version] = weight
    total = sum(clean.values())
    if total != 100:
        raise TrafficError(f"weights must sum to 100, got {total} ({clean})")
    return clean


class TrafficStore:
    def __init__(self, path: db.Target) -> None:
        """``path``: a SQLite file or a PostgreSQL URL (normally the state's ``ledger_db``)."""
        self.path = path
        db.ensure_schema(path, "traffic", _SCHEMA, _PG_SCHEMA)

    def versions(self, model: str) -> dict[str, tuple[int, bool]]:
        """``{version: (weight, loaded)}`` for the model."""
        with db.connect(self.path) as conn:
            rows = conn.execute("SELECT version, weight, loaded FROM traffic WHERE model = ?", (model,)).fetchall()
        return {v: (w, bool(loaded)) for v, w, loaded in rows}

    def weights(self, model: str) -> dict[str, int]:
        return {v: w for v, (w, loaded) in self.versions(model).items() if loaded}

    def set_weights(self, model: str, weights: dict[str, int], reason: str) -> dict[str, int]:
        """Replace the model's weights atomically (versions not named get 0)."""
        with db.transaction(self.path, lock="traffic") as conn:
            loaded = {v for v, in conn.execute("SELECT version FROM traffic WHERE model = ? AND loaded = 1",
                                               (model,)).fetchall()}
            clean = validate_weights(weights, loaded)
            now = utcnow_iso()
            conn.execute("UPDATE traffic SET weight = 0, updated_at = ? WHERE model = ?", (now, model))
            for version, weight in clean.items():
                conn.execute("UPDATE traffic SET weight = ?, updated_at = ? WHERE model = ? AND version = ?",
                             (weight, now, model, version))
            conn.execute("INSERT INTO traffic_history (model, at, weights, reason) VALUES (?, ?, ?, ?)",
                         (model, now, json.dumps(clean, sort_keys=True), reason))
        return clean

    def mark_loaded(self, model: str, version: str, loaded: bool) -> None:
        """Record that a version is (or is no longer) loaded; unloading needs weight 0."""
        with db.transaction(self.path, lock="traffic") as conn:
            row = conn.execute("SELECT weight FROM traffic WHERE model = ? AND version = ?",
                               (model, version)).fetchone()
            if not loaded and row and row[0] > 0:
                raise WeightHeldError(f"version {version} still has weight {row[0]}; move its traffic first")
            if row is None:
                conn.execute("INSERT INTO traffic (model, version, weight, loaded, updated_at) VALUES (?, ?, 0, ?, ?)",
                             (model, version, int(loaded), utcnow_iso()))
            else:
                conn.execute("UPDATE traffic SET loaded = ?, updated_at = ? WHERE model = ? AND version = ?",
                             (int(loaded), utcnow_iso(), model, version))

    def history(self, model: str) -> list[dict]:
        with db.connect(self.path) as conn:
            rows = conn.execute("SELECT at, weights, reason FROM traffic_history WHERE model = ? ORDER BY id",
                                (model,)).fetchall()
        return [{"at": at, "weights": json.loads(w), "reason": r} for at, w, r in rows]
