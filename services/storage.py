"""Experiment storage: one folder per experiment, on a local/NFS path or an object store.

An experiment named NAME lives at ``<storage>/<NAME>/`` and holds everything compare needs:

    <storage>/<NAME>/
        robustloss.json          experiment record: mode, dataset, K, arguments, start time
        calibration.json         analytic mode: computed parameters, targets, residuals, seconds
        summary.json             one row per trial (config, final metrics, compute cost)
        error_curves.png         analytic mode: the paper's Fig. 1/2 for this K
        <Tune trial folders>     Tune's own results, checkpoints and experiment state
        train/                   Ray Train runs (``--mode train`` and multi-worker trials)

``storage`` is a local folder, an NFS mount (a local path on every node), ``s3://bucket/prefix``
(optionally ``?endpoint_override=host:port&scheme=http`` for S3-compatible stores) or
``gs://bucket/prefix``. pyarrow resolves the URI; Ray gets the same filesystem object, so Tune,
Train and this module all read and write the same place.
"""
from __future__ import annotations

import json
import os
import posixpath
import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs

EXPERIMENT_RECORD = "robustloss.json"
SUMMARY = "summary.json"
CALIBRATION = "calibration.json"


class StorageError(ValueError):
    """Storage path that cannot be used (malformed, unreachable or not writable)."""


@dataclass
class Storage:
    """A resolved storage location: ``fs`` plus the ``root`` path inside it."""

    uri: str
    fs: pafs.FileSystem
    root: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        """Path (inside ``fs``) of ``parts`` under the storage root."""
        return posixpath.join(self.root, *parts)

    def display(self, *parts: str) -> str:
        """Human-readable location (URI form for object stores)."""
        if self.is_local:
            return self.path(*parts)
        scheme = self.uri.split("://", 1)[0]
        return f"{scheme}://{self.path(*parts)}"

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def write_json(self, obj, *parts: str, overwrite: bool = True) -> str:
        """Write ``obj`` as JSON; refuses to replace an existing file unless ``overwrite``."""
        target = self.path(*parts)
        if not overwrite and self.exists(*parts):
            raise StorageError(f"refusing to overwrite existing {self.display(*parts)}")
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        with self.fs.open_output_stream(target) as f:
            f.write(json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode())
        return target

    def read_json(self, *parts: str):
        with self.fs.open_input_stream(self.path(*parts)) as f:
            return json.loads(f.read().decode())

    def write_bytes(self, data: bytes, *parts: str) -> str:
        target = self.path(*parts)
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        with self.fs.open_output_stream(target) as f:
            f.write(data)
        return target

    def upload_file(self, local_path: str, *parts: str) -> str:
        with open(local_path, "rb") as f:
            return self.write_bytes(f.read(), *parts)

    def check_writable(self) -> None:
        """Create the root if needed and round-trip a probe file; one-line StorageError otherwise."""
        probe = f".robustloss-probe-{uuid.uuid4().hex[:8]}"
        try:
            self.fs.create_dir(self.root, recursive=True)
            self.write_bytes(b"ok", probe)
            self.fs.delete_file(self.path(probe))
        except Exception as exc:  # pyarrow raises OSError/PermissionError/ArrowException subclasses
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageError(
                f"--storage-path {self.uri!r} is not writable ({first}); "
                "give a writable local/NFS folder or an s3://, gs:// URI with credentials"
            ) from None


def _json_default(obj):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def resolve_storage(uri: str | os.PathLike) -> Storage:
    """Resolve a ``--storage-path`` value to a :class:`Storage` (no I/O beyond building the client).

    Local paths are made absolute (Ray requires that); ``s3://``/``gs://`` URIs keep their query
    options (``endpoint_override``, ``scheme``, ``region``) through ``pyarrow.fs.FileSystem.from_uri``.
    """
    uri = os.fspath(uri)
    if "://" not in uri:
        root = os.path.abspath(os.path.expanduser(uri))
        return Storage(uri=root, fs=pafs.LocalFileSystem(), root=root)
    scheme = uri.split("://", 1)[0]
    if scheme not in ("s3", "gs", "gcs", "file"):
        raise StorageError(f"--storage-path scheme {scheme!r} is not supported; use a path, s3://, gs:// or file://")
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
    except Exception as exc:
        raise StorageError(f"--storage-path {uri!r} cannot be resolved: {str(exc).splitlines()[0]}") from None
    return Storage(uri=uri, fs=fs, root=root.rstrip("/"))
