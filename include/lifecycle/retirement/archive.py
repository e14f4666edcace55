"""Archives of retired model versions: files plus a SHA-256 manifest, on S3 (any S3-compatible store, through
boto3) or in a local folder, written so that no manifest ever claims an archive that is not complete.

Layout under the archive URI: ``<model>/v<version>/<files>`` and ``<model>/v<version>/manifest.json`` listing
``{"path": <relative to the manifest>, "sha256": ..., "size": ...}`` per file.

Writing order: every file is uploaded (on S3 with a SHA-256 checksum the store verifies on receipt), then
read back and compared with its expected sum and size, and only then is the manifest written (and read back).
A failure at any point leaves no manifest; a retry skips the files already there with the right sum (it never
uploads twice) and completes. An archive whose manifest exists is compared with what was staged (or with the
digest the registry recorded), verified, and never rewritten; a foreign one is refused.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lifecycle.errors import ConflictError
from lifecycle.fileio import atomic_write, crash_point

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


class ArchiveError(RuntimeError):
    """The archive cannot be written or read right now (store unreachable, object missing); a retry may help."""


class ChecksumMismatchError(ArchiveError):
    """An archived file does not match its manifest (tampered or corrupted); names the file."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path


class ForeignArchiveError(ConflictError, ArchiveError):
    """The destination already holds a manifest that is not this archive's (another run, model or version, other
    files): it is neither adopted nor overwritten; retrying will not help (HTTP 409)."""

    def __init__(self, where: str, differences: list[str]) -> None:
        super().__init__(f"{where} already exists and is not this archive: {'; '.join(differences)}; refusing to "
                         "adopt or overwrite it")
        self.differences = differences


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Store(Protocol):
    uri: str

    def put(self, key: str, data: bytes, sha256: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def stat(self, key: str) -> tuple[int, str | None] | None: ...


class LocalStore:
    """A folder (the embedded default): atomic writes (:func:`lifecycle.fileio.atomic_write`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"archive key {key!r} escapes {self.root}")
        return path

    def put(self, key: str, data: bytes, sha256: str) -> None:
        atomic_write(self._path(key), data)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ArchiveError(f"{self.uri}/{key} does not exist") from None

    def stat(self, key: str) -> tuple[int, str | None] | None:
        path = self._path(key)
        return (path.stat().st_size, sha256_file(path)) if path.exists() else None


class S3Store:
    """A bucket and prefix through a boto3 S3 client (Airflow's ``S3Hook(aws_conn_id).get_conn()`` in DAGs).

    Objects are written with ``ChecksumAlgorithm=SHA256`` and the expected sum, so the store itself refuses a
    body that arrived damaged; reads ask for the stored checksum (``ChecksumMode=ENABLED``).
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def _call(self, what: str, fn: Callable[..., Any], **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kw)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(kw.get("Key")) from err
            if code in ("BadDigest", "InvalidRequest") and "checksum" in str(err).lower():
                raise ChecksumMismatchError(kw.get("Key", "?"), f"the store refused the upload: {err}") from err
            raise ArchiveError(f"S3 {what} {self.bucket}/{kw.get('Key', '')} failed: {code}: {err}") from err
        except BotoCoreError as err:  # endpoint unreachable, connection reset, checksum on read
            if "checksum" in type(err).__name__.lower():
                raise ChecksumMismatchError(kw.get("Key", "?"), f"read back with a wrong checksum: {err}") from err
            raise ArchiveError(f"S3 {what} {self.bucket}/{kw.get('Key', '')} failed: {err}") from err

    def put(self, key: str, data: bytes, sha256: str) -> None:
        self._call("put", self.client.put_object, Key=self.prefix + key, Body=data, ChecksumAlgorithm="SHA256",
                   ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode())

    def get(self, key: str) -> bytes:
        try:
            resp = self._call("get", self.client.get_object, Key=self.prefix + key, ChecksumMode="ENABLED")
            return resp["Body"].read()
        except FileNotFoundError:
            raise ArchiveError(f"{self.uri}/{key} does not exist") from None

    def stat(self, key: str) -> tuple[int, str | None] | None:
        try:
            head = self._call("head", self.client.head_object, Key=self.prefix + key, ChecksumMode="ENABLED")
        except FileNotFoundError:
            return None
        stored = head.get("ChecksumSHA256")
        sha = base64.b64decode(stored).hex() if stored and "-" not in stored else None
        return int(head["ContentLength"]), sha


def open_store(uri: str, s3_client: Any | None = None) -> Store:
    """``s3://bucket/prefix`` (with ``s3_client``, else a default boto3 client) or a local folder path."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[5:].partition("/")
        if not bucket:
            raise ValueError(f"archive URI {uri!r} names no bucket")
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
        return S3Store(s3_client, bucket, prefix)
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"archive URI {uri!r}: use s3://bucket/prefix or a local folder")
    return LocalStore(Path(uri.removeprefix("file://")))


@dataclass(frozen=True)
class ArchiveResult:
    uri: str  # <store>/<model>/v<version>
    manifest_sha256: str
    files: int
    bytes: int
    uploaded: int  # files written by this call (0: the archive was already complete)


def prefix_for(model: str, version: str | int) -> str:
    return f"{model}/v{version}/"


def write_archive(store: Store, model: str, version: str | int, staged: Path,
                  meta: dict[str, Any] | None = None, *, recorded_sha256: str | None = None) -> ArchiveResult:
    """Upload every file under ``staged``, verify each by reading it back, then write the manifest. Idempotent.

    A manifest already at the destination (a retry, or another registry writing to the same bucket) is trusted
    only if it is this version's: its sha256 is ``recorded_sha256`` (the digest the registry recorded when the
    version was retired), or it lists exactly the staged files (paths, sums, sizes) for the same model, version
    and, where ``meta`` names them, registered model and source run. Anything else raises
    :class:`ForeignArchiveError`, naming the differences, and nothing is written. A trusted one is verified
    (every file read back), never rewritten.
    """
    prefix = prefix_for(model, version)
    files = sorted(p for p in staged.rglob("*") if p.is_file() and p.name != MANIFEST)
    if not files:
        raise ArchiveError(f"nothing staged under {staged} for {model} v{version}")
    entries = []
    for path in files:
        data = path.read_bytes()
        entries.append({"path": path.relative_to(staged).as_posix(), "sha256": sha256_bytes(data), "size": len(data)})
    if store.stat(prefix + MANIFEST) is not None:
        body = store.get(prefix + MANIFEST)
        if recorded_sha256 is None or sha256_bytes(body) != recorded_sha256:
            differences = manifest_differences(body, model, version, entries, meta)
            if differences:
                raise ForeignArchiveError(f"{store.uri}/{prefix}{MANIFEST}", differences)
        manifest, digest = verify_archive(store, model, version)
        if digest != sha256_bytes(body):
            raise ChecksumMismatchError(MANIFEST, "changed while it was being verified")
        log.info("archive: %s%s already complete (%d files); verified", store.uri, prefix, len(manifest["files"]))
        return ArchiveResult(f"{store.uri}/{prefix}".rstrip("/"), digest, len(manifest["files"]),
                             sum(f["size"] for f in manifest["files"]), 0)
    uploaded = 0
    for path, entry in zip(files, entries, strict=True):
        if store.stat(prefix + entry["path"]) == (entry["size"], entry["sha256"]):
            continue  # a retry: already there, intact
        store.put(prefix + entry["path"], path.read_bytes(), entry["sha256"])
        uploaded += 1
        crash_point("archive.object_written")
    for entry in entries:  # read every object back before anything claims the archive is complete
        _check(store, prefix, entry)
    crash_point("archive.objects_verified")
    manifest = {"model": model, "version": str(version), "files": entries, **(meta or {})}
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    digest = sha256_bytes(body)
    store.put(prefix + MANIFEST, body, digest)
    crash_point("archive.manifest_written")
    if sha256_bytes(store.get(prefix + MANIFEST)) != digest:
        raise ChecksumMismatchError(MANIFEST, "read back differently than written")
    log.info("archive: wrote %d of %d files to %s%s and the manifest", uploaded, len(entries), store.uri, prefix)
    return ArchiveResult(f"{store.uri}/{prefix}".rstrip("/"), digest, len(entries),
                         sum(e["size"] for e in entries), uploaded)


#: Manifest fields that say whose archive it is (the rest of ``meta``, a reason or a DAG run id, may differ
#: between two attempts at the same archive).
IDENTITY = ("registered_model", "source_run_id")


def manifest_differences(body: bytes, model: str, version: str | int, entries: list[dict[str, Any]],
                         meta: dict[str, Any] | None = None) -> list[str]:
    """How an existing manifest differs from the archive about to be written (empty: it is the same archive)."""
    try:
        manifest = json.loads(body)
        found = {(f["path"], f["sha256"], int(f["size"])) for f in manifest["files"]}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        return [f"not a manifest ({err})"]
    out = [f"{key} {manifest.get(key)!r} != {want!r}"
           for key, want in (("model", model), ("version", str(version)),
                             *((k, (meta or {})[k]) for k in IDENTITY if k in (meta or {})))
           if str(manifest.get(key)) != str(want)]
    staged = {(e["path"], e["sha256"], int(e["size"])) for e in entries}
    by_path = {p: (s, n) for p, s, n in staged}
    theirs = {p: (s, n) for p, s, n in found}
    changed = sorted(p for p in by_path.keys() & theirs.keys() if by_path[p] != theirs[p])
    if changed:
        out.append("different contents: " + ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else ""))
    for what, names in (("not staged", theirs.keys() - by_path.keys()), ("missing", by_path.keys() - theirs.keys())):
        if names:
            out.append(f"{what}: " + ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else ""))
    return out


def _check(store: Store, prefix: str, entry: dict[str, Any]) -> bytes:
    data = store.get(prefix + entry["path"])
    if len(data) != entry["size"]:
        raise ChecksumMismatchError(entry["path"], f"size {len(data)} != {entry['size']} in the manifest")
    if sha256_bytes(data) != entry["sha256"]:
        raise ChecksumMismatchError(entry["path"], f"sha256 {sha256_bytes(data)[:16]}... != "
                                                   f"{entry['sha256'][:16]}... in the manifest")
    return data


def verify_archive(store: Store, model: str, version: str | int,
                   into: Path | None = None) -> tuple[dict[str, Any], str]:
    """Read the manifest and every file it lists; raise naming the first file that does not match.

    Returns the manifest and its own sha256; with ``into``, the verified files are written there too.
    """
    prefix = prefix_for(model, version)
    try:
        body = store.get(prefix + MANIFEST)
    except ArchiveError as err:
        raise ArchiveError(f"no manifest at {store.uri}/{prefix}{MANIFEST}: the archive is missing or incomplete "
                           f"({err})") from err
    try:
        manifest = json.loads(body)
        entries = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ChecksumMismatchError(MANIFEST, f"not a manifest: {err}") from err
    for entry in entries:
        if Path(entry["path"]).is_absolute() or ".." in Path(entry["path"]).parts:
            raise ChecksumMismatchError(entry["path"], "path escapes the archive")
        data = _check(store, prefix, entry)
        if into is not None:
            atomic_write(into / entry["path"], data)
    return manifest, sha256_bytes(body)
