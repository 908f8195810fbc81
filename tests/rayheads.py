"""Ray heads a test starts and stops itself: `ray start --head --block` in its own session, with its own
--temp-dir and ports, stopped by the pid of that `ray start` process (Ray's own stop command would stop
every Ray on the machine). Used by conftest's session-wide ``other_ray`` and by the cluster tests."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO, free_port, wait_port

RAY_BIN = str(Path(sys.executable).parent / "ray")
NO_AUTH = {"RAY_AUTH_MODE": "disabled"}   # a test's own cluster: no token to share between processes


def kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (a driver started with ``start_new_session``: the driver,
    its embedded Ray and its trial workers). Other Ray clusters on the machine are left alone."""
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def session_pids(sid: int) -> list[int]:
    """Processes whose session id is ``sid`` (field 6 of /proc/PID/stat)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == sid:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return pids


@dataclass
class Head:
    proc: subprocess.Popen
    port: int
    metrics_port: int
    temp_dir: str
    dashboard_port: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_head(*, dashboard: bool = False, num_cpus: int = 1) -> Head:
    """`ray start --head --block` in its own session, temp dir and ports. Every port with a fixed
    default is given (dashboard agent 52365, Ray client 10001): another Ray on the host holds those,
    and a head whose agent cannot bind takes no jobs ("No available agent"). Ray's socket paths must
    fit in 107 bytes, so the temp dir is short and under /tmp rather than pytest's tmp_path."""
    temp = tempfile.mkdtemp(prefix="rl13-", dir="/tmp")
    port, mport, dport = free_port(), free_port(), free_port()
    args = [RAY_BIN, "start", "--head", "--block", f"--temp-dir={temp}", f"--port={port}",
            f"--metrics-export-port={mport}", f"--num-cpus={num_cpus}",
            f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}"]
    args += [f"--dashboard-port={dport}", "--dashboard-host=127.0.0.1"] if dashboard else ["--include-dashboard=false"]
    env = {**os.environ, **NO_AUTH, "RAY_metrics_report_interval_ms": "500"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    head = Head(proc, port, mport, temp, dport if dashboard else None)
    try:
        wait_port(port, timeout=120)
        wait_port(mport, timeout=120)   # served by the node's agent, which the raylet starts: the node is up
        if dashboard:
            wait_port(dport, timeout=120)
            ready = submit(head, "true", wait=False, retry_s=240)   # the Jobs API takes jobs once the head's job agent is up
            assert ready.returncode == 0, "the head's Jobs API never took a job: " + (ready.stdout + ready.stderr)[-2000:]
    except BaseException:
        stop_head(head)
        raise
    return head


def submit(head: Head, *entrypoint: str, runtime_env: dict | None = None, wait: bool = True, retry_s: float = 0,
           timeout: float = 300) -> subprocess.CompletedProcess:
    """`ray job submit --working-dir REPO` to ``head``; retried for ``retry_s`` while the head's dashboard
    does not answer yet or says it has no job agent yet."""
    cmd = [RAY_BIN, "job", "submit", "--address", f"http://127.0.0.1:{head.dashboard_port}", "--working-dir", str(REPO),
           *(["--runtime-env-json", json.dumps(runtime_env)] if runtime_env else []), *([] if wait else ["--no-wait"]),
           "--", *entrypoint]
    deadline = time.time() + retry_s
    while True:
        proc = subprocess.run(cmd, env={**os.environ, **NO_AUTH}, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        out = proc.stderr + proc.stdout
        starting = "No available agent" in out or "Failed to connect to Ray at address" in out   # head still coming up
        if proc.returncode == 0 or not starting or time.time() > deadline:
            return proc
        time.sleep(1)


def stop_head(head: Head, timeout: float = 60) -> list[int]:
    """SIGTERM the `ray start --block` process (it stops its own Ray processes); returns what of its
    session was still alive afterwards (then SIGKILLed, so nothing is left behind either way)."""
    if head.proc.poll() is None:
        head.proc.send_signal(signal.SIGTERM)
        try:
            head.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.time() + 15
    while session_pids(head.proc.pid) and time.time() < deadline:
        time.sleep(0.5)
    left = session_pids(head.proc.pid)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if head.proc.poll() is None:
        head.proc.wait(timeout=10)
    shutil.rmtree(head.temp_dir, ignore_errors=True)
    return left
