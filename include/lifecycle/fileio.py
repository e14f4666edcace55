"""Writing a file so that no reader, and no crash, ever sees it half written: the one copy of that recipe."""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable
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


def fsync_tree(folder: str | os.PathLike[str]) -> None:
    """Make every file and folder under ``folder`` (and ``folder`` itself) durable: for a tree written by plain
    copies (``shutil.copytree``) before a marker says it is complete."""
    folder = Path(folder)
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # files before their folder
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(folder)


def durable_move(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Move a file onto ``dst`` (replacing it) so that after a crash it is in one place or the other, whole.

    Within one file system this is a rename; across file systems the file is copied to a temp file beside ``dst``,
    fsynced and renamed, and only then is ``src`` removed. Both folders are fsynced, so the move itself survives
    a power loss. Missing parent folders of ``dst`` are created.
    """
    import errno
    import shutil

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(6)}.tmp")
        try:
            shutil.copy2(src, tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(dst.parent)
        src.unlink()
    fsync_dir(dst.parent)
    fsync_dir(src.parent)
    return dst


#: Tests only: ``crash_hook(name)`` is called at every :func:`crash_point`; ``None`` (always, in production)
#: makes a crash point a single global lookup. See ``tests/unit/test_crash_recovery.py``.
crash_hook: Callable[[str], None] | None = None


def crash_point(name: str) -> None:
    """Mark a step boundary of a multi-step operation (``"gate.batch_moved"``): where a crash would leave the work
    half done, so a retry must complete it. A no-op unless a test installed :data:`crash_hook`, which may raise
    there to simulate the crash."""
    if crash_hook is not None:
        crash_hook(name)
