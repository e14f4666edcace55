"""Writing a file so that no reader, and no crash, ever sees it half written: the one copy of that recipe."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, mode: int | None = None,
                 replace: bool = True) -> Path:
    """Write ``data`` (``str`` is UTF-8) to ``path`` atomically and durably; returns the path.

    The data goes to a temp file with a unique name in the same folder (so the rename never crosses a file
    system, and two writers never share a temp file), which is flushed and fsynced, then renamed onto ``path``
    with ``os.replace``; the folder is fsynced last so the rename itself survives a power loss. A reader sees
    the old content or the new, never a mix, and a crash leaves at most a stray ``.<name>.*.tmp`` file, never a
    truncated ``path``. Missing parent folders are created.

    ``mode``: the file's permission bits, set before any data is written (a secret is never readable by others,
    not even for a moment); ``None`` gives what a plain ``open(path, "w")`` would (``0o666`` less the umask).
    ``replace=False``: never overwrite; if ``path`` exists (or another writer got there first) the temp file is
    removed and :class:`FileExistsError` raised, so of concurrent creators exactly one wins (``os.link``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if not replace and path.exists():
        raise FileExistsError(f"{path} exists")
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
            break
        except FileExistsError:  # pragma: no cover - a 48-bit name collision
            continue
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: first writer wins
            tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the data itself is already synced
        pass
    finally:
        os.close(fd)
