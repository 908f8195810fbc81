"""Shared fixtures: a loopback S3-compatible server (moto), another Ray on the host, helpers to run the CLI."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(REPO / "sweeps" / "run.py")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


@pytest.fixture(scope="session")
def s3_server():
    """A real moto S3 server process on loopback; yields (endpoint 'host:port', bucket)."""
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    if exe is None:
        pytest.fail("moto_server not installed: pip install -e '.[dev]'")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
             "AWS_EC2_METADATA_DISABLED": "true"}
    old = {k: os.environ.get(k) for k in creds}
    os.environ.update(creds)
    try:
        wait_port(port)
        import boto3

        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1").create_bucket(Bucket="robustloss")
        yield f"127.0.0.1:{port}", "robustloss"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for in-process training tests: the machine has 2 cores, and two OpenMP threads
    on contended cores run small models tens of times slower than one."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def run_cli(args, *, cwd=None, timeout=600, env=None):
    """Run sweeps/run.py in a subprocess; returns CompletedProcess (text)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "1", **(env or {})}
    return subprocess.run(CLI + list(args), cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout, env=full_env)


@pytest.fixture(scope="session")
def other_ray():
    """"Another Ray on the host", started once for the session (tests/rayheads.py: its own session,
    --temp-dir and ports; stopped by its pid). The embedded Ray of the CLI must work beside it, and the
    metrics tests scrape its node."""
    from rayheads import start_head, stop_head

    head = start_head()
    yield head
    stop_head(head)


def assert_quiet_output(out: str, *, max_line: int = 300) -> None:
    """The CLI's default terminal output (issue 13): no traceback, nothing "ignored", no line longer
    than ``max_line`` characters."""
    assert "Traceback" not in out and "Exception ignored" not in out, out[-4000:]
    longest = max(out.splitlines(), key=len)
    assert len(longest) <= max_line, longest


@pytest.fixture
def no_ray(monkeypatch):
    """Any attempt to connect to (or start) Ray fails the test: the refusals must come before it."""
    from services import app, cluster

    def refuse(*a, **k):
        raise AssertionError("Ray was started")
    monkeypatch.setattr(cluster, "connect", refuse)
    monkeypatch.setattr(app, "connect", refuse)
