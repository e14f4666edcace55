"""The lifecycle DB (ledger and the gateway's traffic state): a SQLite file by default, PostgreSQL when
``$LIFECYCLE_DB_URL`` names one (the distributed topology: tasks on several Celery workers and the gateway
share it).

Callers write portable SQL with ``?`` placeholders; :class:`Conn` translates them for psycopg2. Both
connections run in autocommit mode with explicit ``BEGIN``/``COMMIT``, so code reads the same on either:
``conn.begin(lock="traffic")`` is SQLite's ``BEGIN IMMEDIATE`` or PostgreSQL's ``LOCK TABLE``, serialising
writers of that table until commit.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Target = Path | str

_ready: set[tuple[str, str]] = set()
_ready_lock = threading.Lock()


class DatabaseError(RuntimeError):
    """The lifecycle DB cannot be reached or refused a statement; the message names the DB and the cause."""


def is_postgres(target: Target) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def describe(target: Target) -> str:
    """The target without its password, for messages (any ``scheme://user:password@host`` URL)."""
    if "://" not in str(target):
        return str(target)
    scheme, _, rest = str(target).partition("://")
    creds, at, host = rest.rpartition("@")
    return f"{scheme}://{creds.split(':')[0]}{at}{host}" if at else str(target)


class Conn:
    """A DB-API connection in autocommit mode with one placeholder style (``?``) for both dialects."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.postgres = is_postgres(target)
        if self.postgres:
            import psycopg2

            try:
                self.raw = psycopg2.connect(str(target), connect_timeout=10, application_name="lifecycle")
            except psycopg2.OperationalError as err:
                raise DatabaseError(f"lifecycle DB {describe(target)} is unreachable: "
                                    f"{str(err).strip().splitlines()[0]}") from err
            self.raw.autocommit = True
        else:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.raw = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.raw.execute("PRAGMA journal_mode=WAL")
            self.raw.execute("PRAGMA busy_timeout=30000")
            self.raw.execute("PRAGMA synchronous=NORMAL")
        self.in_transaction = False

    def execute(self, sql: str, args: tuple | list = ()) -> Any:
        if self.postgres:
            cur = self.raw.cursor()
            cur.execute(sql.replace("?", "%s"), tuple(args))
            return cur
        return self.raw.execute(sql, tuple(args))

    def script(self, sql: str) -> None:
        """Run several statements (schema DDL); no parameters."""
        if self.postgres:
            self.raw.cursor().execute(sql)
        else:
            self.raw.executescript(sql)

    def begin(self, lock: str | None = None) -> None:
        """Start a transaction; ``lock`` (a table) serialises writers of that table until commit."""
        if self.postgres:
            self.execute("BEGIN")
            if lock:
                self.execute(f"LOCK TABLE {lock} IN SHARE ROW EXCLUSIVE MODE")
        else:
            self.execute("BEGIN IMMEDIATE" if lock else "BEGIN")
        self.in_transaction = True

    def commit(self) -> None:
        self.execute("COMMIT")
        self.in_transaction = False

    def rollback(self) -> None:
        if self.in_transaction:
            self.execute("ROLLBACK")
        self.in_transaction = False

    def close(self) -> None:
        self.raw.close()


@contextmanager
def connect(target: Target) -> Iterator[Conn]:
    conn = Conn(target)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def transaction(target: Target, lock: str | None = None) -> Iterator[Conn]:
    """One transaction: committed when the block ends, rolled back (nothing written) if it raises."""
    with connect(target) as conn:
        conn.begin(lock)
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise


def ensure_schema(target: Target, name: str, sqlite_ddl: str, postgres_ddl: str) -> None:
    """Create a schema: once per process for a PostgreSQL target (concurrent creators take turns), every time
    for a SQLite file."""
    key = (str(target), name)
    if key in _ready:
        return
    with _ready_lock:
        if key in _ready:
            return
        if not is_postgres(target):  # a SQLite file can be deleted under us (tests, `make clean`): always re-run
            with connect(target) as conn:
                conn.script(sqlite_ddl)
            return
        with transaction(target) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"lifecycle-schema-{name}",))
            conn.script(postgres_ddl)
        _ready.add(key)
