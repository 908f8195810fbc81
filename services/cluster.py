"""Connecting to Ray: an embedded local runtime by default, or a running cluster via ``--address``.

Every driver (embedded or joining) gets:

* job metadata (``JobConfig(metadata=...)``): ``job_name`` is what the dashboard's Jobs table shows in
  its *Name* column (Ray 2.60 reads ``metadata.job_name``); the other keys appear in the job's
  details and in ``ray.util.state.list_jobs()``. A ``ray job submit`` job shows the submission's own
  metadata there instead (Ray prefers it): name it with ``--submission-id`` or ``--metadata-json``.
* ``RAY_ADDRESS`` = this driver's GCS, in the driver and (through the job's
  ``worker_process_setup_hook``) in every worker process of the job. Ray's state API
  (``ray.util.state``), which Ray Train's placement-group cleaner calls with no address, otherwise
  looks for "the" local Ray by scanning the processes and fails with ``ConnectionError: Found multiple
  active Ray instances`` (``ray/_private/services.py``, ``canonicalize_bootstrap_address_or_die``) when
  another Ray runs on the host, or picks the one ``ray start`` last recorded in
  ``/tmp/ray/ray_current_cluster`` (``get_ray_address_from_environment``), which may be someone else's.
  The driver's previous value is restored by :func:`shutdown` (or by the next :func:`connect`).
* quiet logging (services/quiet.py) unless ``verbose``, in the driver and in the workers.
"""
from __future__ import annotations

import logging
import os
import socket

from services import timeline

VERBOSE_ENV = "ROBUSTLOSS_VERBOSE"   # "1": the worker setup hook leaves Ray's logging as it is
TRAIN_STATE_ENV = "RAY_TRAIN_ENABLE_STATE_TRACKING"  # "1": Ray Train runs appear in the dashboard's Train view
_saved_env: dict[str, str | None] = {}  # what connect() changed in os.environ, to put back
_embedded = {"now": False}               # whether connect() started an embedded Ray (for describe())


class ClusterError(ValueError):
    """``--address`` that does not lead to a running Ray cluster."""


def check_address(address: str | None, *, timeout: float = 3.0) -> None:
    """Fail in one line, before any Ray work, if ``address`` cannot be a reachable cluster.

    ``None``: an embedded local Ray is started later, nothing to check. ``auto``: a cluster started on
    this machine with ``ray start`` (its address file) or ``RAY_ADDRESS``. ``host:port`` or
    ``ray://host:port``: a TCP connection to the GCS (or Ray Client) port must open.
    """
    if address is None:
        return
    if address == "auto":
        if os.environ.get("RAY_ADDRESS"):
            return check_address(os.environ["RAY_ADDRESS"], timeout=timeout)
        from services._private_api import ray_address_file

        found = ray_address_file()   # what Ray's own `auto` reads: $RAY_TMPDIR (or $TMPDIR)/ray, else /tmp/ray
        if os.path.exists(found):
            with open(found) as f:
                return check_address(f.read().strip() or None, timeout=timeout)
        raise ClusterError(f"--address auto: no running Ray cluster found on this machine (no {found}); start one with "
                           "`ray start --head` (a head with its own temp dir: set RAY_TMPDIR for both) or give host:port")
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address!r} is malformed; expected auto, host:port or ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(f"--address {address!r} is unreachable ({exc.strerror or exc}); is `ray start --head` running there?") from None


def job_metadata(job_name: str | None, metadata: dict | None) -> dict[str, str]:
    """``JobConfig`` metadata: string values only (Ray's rule); ``job_name`` under the key the
    dashboard's Jobs table shows as the job's Name."""
    out = {str(k): str(v) for k, v in (metadata or {}).items() if v is not None}
    if job_name:
        out["job_name"] = str(job_name)
    return out


def starts_embedded(address: str | None) -> bool:
    """Whether :func:`connect` with ``address`` starts an embedded Ray (with this machine's CPUs) rather
    than joining a cluster: no address, and not inside a `ray job submit` job (which sets RAY_ADDRESS)."""
    return address is None and not os.environ.get("RAY_ADDRESS")


def train_state_tracking() -> str:
    """``RAY_TRAIN_ENABLE_STATE_TRACKING`` for the driver and the job's workers: the caller's, else "1"."""
    return os.environ.get(TRAIN_STATE_ENV, "1")


def worker_env(verbose: bool) -> dict[str, str]:
    """Environment of the job's Ray workers. ``MALLOC_ARENA_MAX=2`` (unless the caller set it): a reused
    trial actor runs each trial in a new thread, and glibc gives new threads new malloc arenas whose freed
    memory it keeps, so a worker's resident memory grew ~27 MB per trial (measured: 861 → 1265 MB over 16
    trials of one actor; with 2 arenas it stays within ~60 MB of its first trial)."""
    return {VERBOSE_ENV: "1" if verbose else "0", "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2"),
            TRAIN_STATE_ENV: train_state_tracking()}


def worker_setup() -> None:
    """The job's ``worker_process_setup_hook``: runs in every Ray worker process of the job at start.

    Points ``RAY_ADDRESS`` at the worker's own cluster (see the module docstring: the placement-group
    cleaner's state-API calls); unless the driver ran with ``verbose``, quiets Ray's logging and drops
    the unraisable-``SystemExit`` report of a worker Ray stops and Ray's own deprecation warnings
    (services/quiet.py)."""
    import ray

    from services.quiet import drop_ray_warnings, drop_termination_noise, quiet_ray

    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    verbose = os.environ.get(VERBOSE_ENV) == "1"
    quiet_ray(verbose)
    if not verbose:
        drop_termination_noise()
        drop_ray_warnings()


def _set_env(key: str, value: str) -> None:
    if key not in _saved_env:
        _saved_env[key] = os.environ.get(key)
    os.environ[key] = value


def _restore_env() -> None:
    for key, value in _saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_env.clear()


def connect(address: str | None, *, num_cpus: int | None = None, num_gpus: int | None = None,
            dashboard: bool | None = None, job_name: str | None = None, metadata: dict | None = None,
            verbose: bool = False):
    """``ray.init`` for the CLI: embedded local Ray when ``address`` is None, else join the cluster.

    The embedded runtime gets every local core unless told otherwise; ``dashboard=None`` lets Ray
    start its dashboard when ``ray[default]`` is installed (it is). ``job_name``/``metadata``: see
    :func:`job_metadata`. Returns Ray's context (``.dashboard_url``, ``.address_info``).
    """
    import ray

    from services import quiet

    if ray.is_initialized():
        return ray.get_runtime_context()
    _restore_env()  # a previous Ray of this process ended with a bare ray.shutdown(): its address is stale
    if address is None and not starts_embedded(address):  # inside `ray job submit`: join that cluster
        address = "auto"
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    quiet.quiet_ray(verbose)  # before ray.init: its start-up lines come from the driver's loggers
    common = dict(
        logging_level=logging.INFO if verbose else logging.WARNING,  # ray.init sets the "ray" logger to this
        job_config=ray.job_config.JobConfig(metadata=job_metadata(job_name, metadata)),
        runtime_env={"env_vars": worker_env(verbose), "worker_process_setup_hook": worker_setup},
    )
    _embedded["now"] = address is None
    timeline.mark("ray_init")
    if address is None:  # "local": always a new embedded instance, even if `ray start` runs on this machine
        ctx = ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            num_gpus=num_gpus,
            include_dashboard=dashboard,
            log_to_driver=True,
            **common,
        )
    else:
        try:
            ctx = ray.init(address=address, **common)
        except ConnectionError as exc:
            # Ray 2.59+: a cluster with token authentication. `auto` finds the token by itself; an explicit
            # host:port needs RAY_AUTH_MODE=token (read when ray is imported) and the cluster's token.
            hint = "" if os.environ.get("RAY_AUTH_MODE") == "token" else \
                "; if the cluster uses token authentication, set RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN) or use --address auto"
            raise ClusterError(f"--address {address!r}: {str(exc).splitlines()[0]}{hint}") from None
    _set_env("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    _set_env(TRAIN_STATE_ENV, train_state_tracking())  # --mode train's TorchTrainer runs in this process
    timeline.mark("ray_up")
    if not verbose:
        quiet.filter_worker_stream()
    return ctx


def describe(ctx=None) -> str:
    """One line naming the Ray this process is connected to: embedded or cluster, its GCS address
    and, when there is one, the dashboard URL (``ctx``: what :func:`connect` returned). Quiet mode
    drops Ray's own "Started a local Ray instance" / "Connected to Ray cluster" lines, so the CLI
    prints this instead."""
    import ray

    url = getattr(ctx, "dashboard_url", None)
    kind = "embedded Ray" if _embedded["now"] else "Ray cluster"
    return f"{kind} at {ray.get_runtime_context().gcs_address}" + (f", dashboard http://{url}" if url else "")


def shutdown() -> None:
    """``ray.shutdown()`` and put back the environment :func:`connect` changed."""
    import ray

    ray.shutdown()
    _restore_env()


def cluster_capacity() -> dict:
    """CPUs and GPUs of the connected cluster (used to size ``max_concurrent_trials``)."""
    import ray

    res = ray.cluster_resources()
    return {"CPU": float(res.get("CPU", 0.0)), "GPU": float(res.get("GPU", 0.0))}


def storage_nodes() -> int:
    """How many nodes will write to the experiment storage: the alive nodes of the connected cluster,
    and at least 2 when the driver's node offers no CPU (a head that runs no trials, as in
    deploy/kuberay: trials run on worker nodes an autoscaler may add later). For
    :func:`services.storage.check_shared`."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    here = ray.get_runtime_context().get_node_id()
    mine = next((n for n in alive if n.get("NodeID") == here), None)
    if mine is not None and not mine.get("Resources", {}).get("CPU"):
        return max(len(alive), 2)
    return len(alive)
