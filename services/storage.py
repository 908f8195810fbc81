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

Where results go when nothing is said, and how a relative path is read (:func:`resolve_user_path`):

* no ``--storage-path``: ``$ROBUSTLOSS_STORAGE`` if set, else ``~/robustloss_results`` (like Tune's
  ``~/ray_results``): absolute and outside any working directory, so a ``ray job submit
  --working-dir .`` job does not write into Ray's temporary copy of the checkout, which Ray deletes
  with its session;
* a relative path is relative to the directory the CLI was launched from; inside a ``ray job
  submit --working-dir`` job that directory *is* Ray's temporary package, so a relative path is
  refused there: give an absolute path, ``s3://``/``gs://``, or set ``ROBUSTLOSS_STORAGE`` in the
  job's runtime env (``--runtime-env-json '{"env_vars": {"ROBUSTLOSS_STORAGE": "/mnt/results"}}'``);
* on a cluster of more than one node the storage must be shared (:func:`check_shared`, Ray's rule).
"""
from __future__ import annotations

import json
import os
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

EXPERIMENT_RECORD = "robustloss.json"
SUMMARY = "summary.json"
CALIBRATION = "calibration.json"
STORAGE_ENV = "ROBUSTLOSS_STORAGE"
DEFAULT_FOLDER = "robustloss_results"  # under the home directory, as Tune's ~/ray_results
RAY_PACKAGE_PREFIX = "_ray_pkg_"       # ray/_private/runtime_env/packaging.py: RAY_PKG_PREFIX
RAY_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for a submitted driver
# filesystems that are the same on every node that mounts them (the types /proc/mounts names)
SHARED_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "glusterfs", "fuse.")


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


def experiments(storage: Storage) -> list[str]:
    """The experiments under ``storage``'s root: folders holding a request record, a summary or a compare report."""
    try:
        entries = storage.fs.get_file_info(pafs.FileSelector(storage.root))
    except (FileNotFoundError, OSError):
        return []
    names = sorted(e.base_name for e in entries if e.type == pafs.FileType.Directory)
    return [n for n in names if any(storage.exists(n, f) for f in (EXPERIMENT_RECORD, SUMMARY, "compare.json"))]


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


def default_storage_path() -> str:
    """``$ROBUSTLOSS_STORAGE`` if set, else ``~/robustloss_results`` (absolute)."""
    return os.environ.get(STORAGE_ENV) or os.path.join(os.path.expanduser("~"), DEFAULT_FOLDER)


def ray_package_dir(cwd: str | None = None, environ=None) -> str | None:
    """The Ray working-dir package this process runs in (``ray job submit --working-dir``), or None.

    Ray unpacks the package to ``<ray temp>/session_*/runtime_resources/working_dir_files/_ray_pkg_<hash>``
    and starts the driver there; a job that has a working_dir also carries it in the job config Ray's
    supervisor passes in ``RAY_JOB_CONFIG_JSON_ENV_VAR``."""
    cwd = Path(os.path.abspath(cwd or os.getcwd()))
    for p in (cwd, *cwd.parents):
        if p.name.startswith(RAY_PACKAGE_PREFIX) and "runtime_resources" in p.parts:
            return str(p)
    raw = (os.environ if environ is None else environ).get(RAY_JOB_CONFIG_ENV)
    if raw:
        try:
            if (json.loads(raw).get("runtime_env") or {}).get("working_dir"):
                return str(cwd)
        except (ValueError, AttributeError):
            pass
    return None


def resolve_user_path(path: str | os.PathLike | None, launch_dir: str | None = None) -> str:
    """The storage the user meant: ``path`` (None: :func:`default_storage_path`) with ``~`` expanded
    and a relative path joined to ``launch_dir`` (default: the current directory). URIs are kept.

    Refused in one line: a relative path when the current directory is Ray's temporary package and
    no ``launch_dir`` is given, and any path inside that package (Ray deletes it with the session)."""
    raw = os.fspath(path) if path is not None else default_storage_path()
    if "://" in raw:
        return raw
    expanded = os.path.expanduser(raw)
    package = ray_package_dir() if launch_dir is None else None
    if not os.path.isabs(expanded):
        if package is not None:
            raise StorageError(
                f"storage path {raw!r} is relative and this job runs in Ray's temporary package {package} "
                f"(deleted with the Ray session); give an absolute path, s3:// or gs://, or set {STORAGE_ENV} "
                "in the job's runtime env")
        expanded = os.path.join(launch_dir or os.getcwd(), expanded)
    resolved = os.path.normpath(expanded)
    package = package or ray_package_dir()
    if package is not None and (resolved + os.sep).startswith(package + os.sep):
        raise StorageError(f"storage path {resolved} is inside Ray's temporary package {package} (deleted with the "
                           "Ray session); give a path outside it, s3:// or gs://")
    return resolved


def mount_type(path: str, mounts: str = "/proc/mounts") -> str:
    """Filesystem type of the mount holding ``path`` (its nearest existing ancestor), from ``mounts``;
    "" when unknown (no such file: not Linux)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    real = os.path.realpath(p)
    best, fstype = "", ""
    try:
        with open(mounts) as f:
            rows = [line.split() for line in f]
    except OSError:
        return ""
    for row in rows:
        if len(row) < 3:
            continue
        point = row[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, row[2]
    return fstype


def is_shared_fs(fstype: str) -> bool:
    return any(fstype == t or (t.endswith(".") and fstype.startswith(t)) for t in SHARED_FS)


def check_shared(storage: Storage, num_nodes: int, *, shared: bool = False, mounts: str = "/proc/mounts") -> None:
    """Refuse, in one line, a node-local storage path for a cluster of ``num_nodes`` > 1.

    Ray's rule (ray/train/v2/_internal/execution/storage.py): trials checkpoint from the node they run
    on and the driver reads on the head, so the storage must be a cloud URI or a filesystem shared by
    every node. Object stores pass; a local path passes when its mount is a network filesystem
    (:data:`SHARED_FS`, read from ``mounts``) or when the user insists that it is shared (``shared``,
    the CLI's ``--storage-shared``)."""
    if num_nodes <= 1 or not storage.is_local or shared:
        return
    fstype = mount_type(storage.root, mounts)
    if is_shared_fs(fstype):
        return
    raise StorageError(
        f"--storage-path {storage.root} is on this node's {fstype or 'local'} filesystem, but the cluster has "
        f"{num_nodes} nodes and every node writes results: use shared storage (an NFS mount at the same path "
        "on every node, s3://bucket/prefix or gs://bucket/prefix), or pass --storage-shared if this path is "
        "such a mount")
