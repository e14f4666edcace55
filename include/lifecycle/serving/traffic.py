"""Traffic weights per model version, persisted in the lifecycle DB so a restarted gateway comes back with the
same weights (SQLite, or PostgreSQL when ``$LIFECYCLE_DB_URL`` is set: see :mod:`lifecycle.db`). Every change is
validated as a whole and written in one transaction, and appended to a history table (what the canary did, and
when).

Each model's traffic state has a **revision**: an integer that every weight change and every load or unload that
changes the state raises by one, in the same transaction. A writer that read the state at revision ``r`` passes
``expected_revision=r``; if anyone changed the state since, nothing is written and
:class:`TrafficConflictError` (HTTP 409) carries the current revision and weights: concurrent operators (a deploy,
a manual rollback, a retire's drain) never silently undo each other.

A model may also have a **shadow pair** (table ``shadow``): a champion and a challenger, both loaded, between which
the gateway mirrors requests (a request answered by one is scored by the other too, off the response path) with
probability ``sample``. Setting or clearing it raises the revision too; a version in the pair cannot be unloaded
(:class:`ShadowHeldError`, 409), as one with weight cannot."""
from __future__ import annotations

import json
import math
import sqlite3
from typing import NamedTuple

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
    reason  TEXT NOT NULL,
    revision INTEGER
);
CREATE TABLE IF NOT EXISTS traffic_revision (
    model    TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS shadow (
    model      TEXT PRIMARY KEY,
    champion   TEXT NOT NULL,
    challenger TEXT NOT NULL,
    sample     DOUBLE PRECISION NOT NULL CHECK (sample > 0 AND sample <= 1),
    updated_at TEXT NOT NULL
);
"""
# A DB created before revisions has traffic_history without its column: PostgreSQL adds it here; SQLite, which has
# no ADD COLUMN IF NOT EXISTS, in TrafficStore._upgrade_sqlite.
_PG_SCHEMA = _SCHEMA.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY") + \
    "ALTER TABLE traffic_history ADD COLUMN IF NOT EXISTS revision INTEGER;\n"


class TrafficError(InvalidRequestError, ValueError):
    """A traffic change that cannot be applied; nothing was changed (HTTP 422)."""


class WeightHeldError(ConflictError, TrafficError):
    """Unloading a version that still has weight: move its traffic first (HTTP 409; still a ``TrafficError``)."""


class ShadowHeldError(ConflictError, TrafficError):
    """Unloading a version that is in the model's shadow pair: clear the shadow first (HTTP 409)."""


class TrafficConflictError(ConflictError, TrafficError):
    """A compare-and-set lost: the traffic changed since the writer read it (its ``expected_revision`` is not the
    current one); nothing was changed (HTTP 409; still a ``TrafficError``). ``revision`` and ``weights`` are the
    current state, ``expected`` what the writer passed."""

    def __init__(self, message: str, revision: int, weights: dict[str, int], expected: int | None = None) -> None:
        super().__init__(message)
        self.revision, self.weights, self.expected = revision, weights, expected


class ShadowPair(NamedTuple):
    """A model's shadow pair as stored: requests answered by either version are mirrored to the other with
    probability ``sample``; ``updated_at``: when it was set (ISO, UTC)."""

    champion: str
    challenger: str
    sample: float
    updated_at: str = ""

    def to_dict(self) -> dict:
        return {"champion": self.champion, "challenger": self.challenger, "sample": self.sample,
                "updated_at": self.updated_at}


class Applied(NamedTuple):
    """A traffic change as written: the weights and the model's revision after it."""

    weights: dict[str, int]
    revision: int


def check_revision(value: object, field: str = "expected_revision") -> int:
    """A revision as a caller passes it: a non-negative integer (a bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TrafficError(f"{field} must be a non-negative integer, got {show(value)}")
    if value < 0:
        raise TrafficError(f"{field} must be a non-negative integer, got {value}")
    return value


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


def check_shadow(champion: object, challenger: object, sample: object) -> tuple[str, str, float]:
    """The checks of a shadow pair that need no state: two distinct version ids (strings of plain ASCII digits) and
    a sample rate in (0, 1]; messages echo at most ``ECHO_CHARS`` of a bad value."""
    for field, version in (("champion", champion), ("challenger", challenger)):
        if not isinstance(version, str) or not VERSION_ID.fullmatch(version):
            raise TrafficError(f"{field} must be a version id: a string holding a positive integer in plain ASCII "
                               f"digits (no sign, leading zero or decimal point), got {show(version)}")
    if champion == challenger:
        raise TrafficError(f"champion and challenger must be two different versions, got {champion} twice")
    value = math.nan
    if isinstance(sample, float):
        value = sample
    elif isinstance(sample, int) and not isinstance(sample, bool):
        value = float(sample) if abs(sample) <= 1 else math.inf  # no float() of a 400-digit integer
    if not 0 < value <= 1:  # NaN fails too
        raise TrafficError(f"sample must be a number in (0, 1] (the share of requests mirrored), got {show(sample)}")
    return champion, challenger, value  # type: ignore[return-value]


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
        if not db.is_postgres(path):
            self._upgrade_sqlite()

    def _upgrade_sqlite(self) -> None:
        """Give a traffic_history created before revisions its ``revision`` column (old rows: NULL)."""
        with db.connect(self.path) as conn:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(traffic_history)").fetchall()}
            if "revision" in columns:
                return
            try:
                conn.execute("ALTER TABLE traffic_history ADD COLUMN revision INTEGER")
            except sqlite3.OperationalError as err:  # another process added it first
                if "duplicate column" not in str(err):
                    raise

    def versions(self, model: str) -> dict[str, tuple[int, bool]]:
        """``{version: (weight, loaded)}`` for the model."""
        with db.connect(self.path) as conn:
            rows = conn.execute("SELECT version, weight, loaded FROM traffic WHERE model = ?", (model,)).fetchall()
        return {v: (w, bool(loaded)) for v, w, loaded in rows}

    def weights(self, model: str) -> dict[str, int]:
        return {v: w for v, (w, loaded) in self.versions(model).items() if loaded}

    def revision(self, model: str) -> int:
        """The model's traffic revision (0 before its first change)."""
        with db.connect(self.path) as conn:
            return _revision(conn, model)

    def state(self, model: str) -> Applied:
        """The weights of the loaded versions and the revision they belong to, read in one transaction."""
        with db.transaction(self.path) as conn:
            if conn.postgres:  # one snapshot for both reads (PostgreSQL's default is one per statement)
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return Applied(_loaded_weights(conn, model), _revision(conn, model))

    def expect(self, model: str, expected_revision: int) -> None:
        """Raise :class:`TrafficConflictError` unless the model is at ``expected_revision`` (a check before a
        refusal: a writer whose view is stale hears that first)."""
        state = self.state(model)
        if state.revision != expected_revision:
            raise conflict(model, expected_revision, state.revision, state.weights)

    def set_weights(self, model: str, weights: dict[str, int], reason: str,
                    expected_revision: int | None = None) -> Applied:
        """Replace the model's weights atomically (versions not named get 0); returns the weights written and the
        new revision. With ``expected_revision``, a compare-and-set: if the model's revision is another one,
        :class:`TrafficConflictError` (current revision and weights) and nothing is changed."""
        if expected_revision is not None:
            check_revision(expected_revision)
        with db.transaction(self.path, lock="traffic") as conn:
            current = _compare(conn, model, expected_revision)
            loaded = set(_loaded_weights(conn, model))
            clean = validate_weights(weights, loaded)
            now = utcnow_iso()
            conn.execute("UPDATE traffic SET weight = 0, updated_at = ? WHERE model = ?", (now, model))
            for version, weight in clean.items():
                conn.execute("UPDATE traffic SET weight = ?, updated_at = ? WHERE model = ? AND version = ?",
                             (weight, now, model, version))
            revision = _bump(conn, model, current)
            conn.execute("INSERT INTO traffic_history (model, at, weights, reason, revision) VALUES (?, ?, ?, ?, ?)",
                         (model, now, json.dumps(clean, sort_keys=True), reason, revision))
        return Applied(clean, revision)

    def mark_loaded(self, model: str, version: str, loaded: bool) -> int:
        """Record that a version is (or is no longer) loaded; unloading needs weight 0. A change raises the
        revision; recording what is already so (a restarted gateway loading its versions again) does not.
        Returns the model's revision."""
        with db.transaction(self.path, lock="traffic") as conn:
            current = _revision(conn, model)
            row = conn.execute("SELECT weight, loaded FROM traffic WHERE model = ? AND version = ?",
                               (model, version)).fetchone()
            if not loaded and row and row[0] > 0:
                raise WeightHeldError(f"version {version} still has weight {row[0]}; move its traffic first")
            if not loaded and row and bool(row[1]):
                pair = _shadow(conn, model)
                if pair is not None and version in (pair.champion, pair.challenger):
                    raise ShadowHeldError(f"version {version} is in the shadow pair (champion {pair.champion}, "
                                          f"challenger {pair.challenger}); clear the shadow first")
            if row is None:
                conn.execute("INSERT INTO traffic (model, version, weight, loaded, updated_at) VALUES (?, ?, 0, ?, ?)",
                             (model, version, int(loaded), utcnow_iso()))
            elif bool(row[1]) == loaded:
                return current
            else:
                conn.execute("UPDATE traffic SET loaded = ?, updated_at = ? WHERE model = ? AND version = ?",
                             (int(loaded), utcnow_iso(), model, version))
            return _bump(conn, model, current)

    def shadow(self, model: str) -> ShadowPair | None:
        """The model's shadow pair, or None."""
        with db.connect(self.path) as conn:
            return _shadow(conn, model)

    def shadow_state(self, model: str) -> tuple[ShadowPair | None, int]:
        """The shadow pair and the revision it belongs to, read in one transaction."""
        with db.transaction(self.path) as conn:
            if conn.postgres:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return _shadow(conn, model), _revision(conn, model)

    def set_shadow(self, model: str, champion: str, challenger: str, sample: float = 1.0,
                   expected_revision: int | None = None) -> tuple[ShadowPair, int]:
        """Set (or replace) the model's shadow pair: both versions loaded, distinct; -> (the pair, the new
        revision). Setting what is already set changes nothing (same revision). ``expected_revision``: a
        compare-and-set, as for :meth:`set_weights`."""
        champion, challenger, sample = check_shadow(champion, challenger, sample)
        if expected_revision is not None:
            check_revision(expected_revision)
        with db.transaction(self.path, lock="traffic") as conn:
            current = _compare(conn, model, expected_revision)
            loaded = set(_loaded_weights(conn, model))
            missing = [v for v in (champion, challenger) if v not in loaded]
            if missing:
                raise TrafficError(f"version(s) {missing} not loaded in the gateway (loaded: "
                                   f"{sorted(loaded, key=int) or 'none'}); load them first")
            before = _shadow(conn, model)
            if before is not None and before[:3] == (champion, challenger, sample):
                return before, current
            now = utcnow_iso()
            if before is None:
                conn.execute("INSERT INTO shadow (model, champion, challenger, sample, updated_at) "
                             "VALUES (?, ?, ?, ?, ?)", (model, champion, challenger, sample, now))
            else:
                conn.execute("UPDATE shadow SET champion = ?, challenger = ?, sample = ?, updated_at = ? "
                             "WHERE model = ?", (champion, challenger, sample, now, model))
            return ShadowPair(champion, challenger, sample, now), _bump(conn, model, current)

    def clear_shadow(self, model: str, expected_revision: int | None = None) -> int:
        """Stop mirroring for the model; -> the revision (raised only if there was a pair)."""
        if expected_revision is not None:
            check_revision(expected_revision)
        with db.transaction(self.path, lock="traffic") as conn:
            current = _compare(conn, model, expected_revision)
            if _shadow(conn, model) is None:
                return current
            conn.execute("DELETE FROM shadow WHERE model = ?", (model,))
            return _bump(conn, model, current)

    def history(self, model: str) -> list[dict]:
        """Every change, oldest first: ``at``, ``weights``, ``reason`` and the ``revision`` it made (None for a
        change recorded before revisions)."""
        with db.connect(self.path) as conn:
            rows = conn.execute("SELECT at, weights, reason, revision FROM traffic_history WHERE model = ? "
                                "ORDER BY id", (model,)).fetchall()
        return [{"at": at, "weights": json.loads(w), "reason": r, "revision": rev} for at, w, r, rev in rows]


def conflict(model: str, expected: int, revision: int, weights: dict[str, int]) -> TrafficConflictError:
    return TrafficConflictError(f"traffic of {model} changed since revision {expected}: it is at revision {revision} "
                                f"(weights {weights}); read it again and decide on the current weights",
                                revision, weights, expected)


def _revision(conn: db.Conn, model: str) -> int:
    row = conn.execute("SELECT revision FROM traffic_revision WHERE model = ?", (model,)).fetchone()
    return int(row[0]) if row else 0


def _compare(conn: db.Conn, model: str, expected_revision: int | None) -> int:
    """The model's revision, read under the traffic lock; :class:`TrafficConflictError` when ``expected_revision``
    is given and differs (the compare of every compare-and-set)."""
    current = _revision(conn, model)
    if expected_revision is not None and expected_revision != current:
        raise conflict(model, expected_revision, current, _loaded_weights(conn, model))
    return current


def _shadow(conn: db.Conn, model: str) -> ShadowPair | None:
    row = conn.execute("SELECT champion, challenger, sample, updated_at FROM shadow WHERE model = ?",
                       (model,)).fetchone()
    return None if row is None else ShadowPair(str(row[0]), str(row[1]), float(row[2]), str(row[3]))


def _loaded_weights(conn: db.Conn, model: str) -> dict[str, int]:
    rows = conn.execute("SELECT version, weight FROM traffic WHERE model = ? AND loaded = 1", (model,)).fetchall()
    return {v: int(w) for v, w in sorted(rows, key=lambda r: int(r[0]) if str(r[0]).isdigit() else 0)}


def _bump(conn: db.Conn, model: str, current: int) -> int:
    """Raise the model's revision by one (the caller holds the traffic lock and read ``current`` under it)."""
    if current == 0 and conn.execute("SELECT 1 FROM traffic_revision WHERE model = ?", (model,)).fetchone() is None:
        conn.execute("INSERT INTO traffic_revision (model, revision) VALUES (?, 1)", (model,))
    else:
        conn.execute("UPDATE traffic_revision SET revision = ? WHERE model = ?", (current + 1, model))
    return current + 1
