"""Connecting to Ray: an embedded local runtime by default, or a running cluster via ``--address``."""
from __future__ import annotations

import os
import socket


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
        if os.path.exists("/tmp/ray/ray_current_cluster"):
            with open("/tmp/ray/ray_current_cluster") as f:
                return check_address(f.read().strip() or None, timeout=timeout)
        raise ClusterError("--address auto: no running Ray cluster found on this machine; start one with `ray start --head` or give host:port")
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address!r} is malformed; expected auto, host:port or ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(f"--address {address!r} is unreachable ({exc.strerror or exc}); is `ray start --head` running there?") from None


def connect(address: str | None, *, num_cpus: int | None = None, num_gpus: int | None = None, dashboard: bool | None = None):
    """``ray.init`` for the CLI: embedded local Ray when ``address`` is None, else join the cluster.

    The embedded runtime gets every local core unless told otherwise; ``dashboard=None`` lets Ray
    start its dashboard when ``ray[default]`` is installed (it is).
    """
    if address is None and os.environ.get("RAY_ADDRESS"):  # inside `ray job submit`: join that cluster
        address = "auto"
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if address is None:  # "local": always a new embedded instance, even if `ray start` runs on this machine
        return ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            num_gpus=num_gpus,
            include_dashboard=dashboard,
            log_to_driver=True,
        )
    try:
        return ray.init(address=address)
    except ConnectionError as exc:
        # Ray 2.59+: a cluster with token authentication. `auto` finds the token by itself; an explicit
        # host:port needs RAY_AUTH_MODE=token (read when ray is imported) and the cluster's token.
        hint = "" if os.environ.get("RAY_AUTH_MODE") == "token" else \
            "; if the cluster uses token authentication, set RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN) or use --address auto"
        raise ClusterError(f"--address {address!r}: {str(exc).splitlines()[0]}{hint}") from None


def cluster_capacity() -> dict:
    """CPUs and GPUs of the connected cluster (used to size ``max_concurrent_trials``)."""
    import ray

    res = ray.cluster_resources()
    return {"CPU": float(res.get("CPU", 0.0)), "GPU": float(res.get("GPU", 0.0))}
