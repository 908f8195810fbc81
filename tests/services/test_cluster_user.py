"""A Ray cluster user's day (issue 13): quiet output, a dashboard that names jobs and trials,
per-trial metrics on the node's metrics port, an embedded Ray that works beside another Ray, and no
collateral damage.

The Ray tests start their own heads (tests/rayheads.py: `ray start --head --block` with its own
--temp-dir and ports, token auth off) and stop exactly those, by the pid of that `ray start` process:
the session's ``other_ray`` (conftest) and this module's head with a dashboard, which the two job tests
share. The CLI's default output beside another Ray is asserted by the e2e tests that run the CLI
(tests/services/test_ray_e2e.py: `--mode train` with DDP, `--mode all`).
"""
import json
import logging
import logging.config
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, assert_quiet_output
from rayheads import NO_AUTH, RAY_BIN, session_pids, start_head, stop_head, submit
from services import cluster, metrics, quiet


def run_driver(code: str, *args, env=None, timeout=240) -> dict:
    """Run a small Ray driver in its own process (Ray's env and loggers stay out of pytest's); it
    prints ``RESULT <json>`` as its last line."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=full, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {**json.loads(lines[-1][len("RESULT "):]), "_stderr": proc.stderr, "_stdout": proc.stdout}


SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][\w:]*)\{(?P<labels>.*)\}\s+(?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> list[tuple[str, dict, float]]:
    """(name, labels, value) of every labelled sample at a Prometheus endpoint."""
    return samples(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())


def samples(body: str) -> list[tuple[str, dict, float]]:
    """(name, labels, value) of every labelled sample of a Prometheus text exposition."""
    out = []
    for line in body.splitlines():
        m = SAMPLE.match(line)
        if m:
            out.append((m["name"], dict(LABEL.findall(m["labels"])), float(m["value"])))
    return out


# ------------------------------------------------------------------------ quiet (no Ray runtime)
@pytest.fixture
def restore_logging():
    yield
    quiet.quiet_ray(True)   # undo: other tests see Ray's loggers as Ray left them


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_each_dropped_line_is_really_emitted_by_that_ray_code():
    """Every filter names where its line comes from: the text is in that Ray source (or, for the C++
    line, in Ray's core worker library), so a Ray release that changes it fails here."""
    import ray

    for drop in quiet.LOG_DROPS:
        logger_name = quiet.emitter(drop).name
        source = Path(logger_name) if logger_name.endswith(".py") else \
            Path(ray.__file__).parent.joinpath(*logger_name.split(".")[1:]).with_suffix(".py")
        text = source.read_text()
        static = drop.starts.rstrip()   # the message's constant start, before any formatted value
        assert static in text, (drop.where, source)
        assert "getLogger(__file__)" in text if drop.where.endswith(".py") else "getLogger(__name__)" in text
    raylet = (Path(ray.__file__).parent / "_raylet.so").read_bytes()
    for drop in quiet.STREAM_DROPS:
        assert drop.starts.encode() in raylet
    for drop in quiet.TRACEBACK_DROPS:   # where: "... (<path under ray/>)"
        source = Path(ray.__file__).parent / drop.where.split("(", 1)[1].rstrip(")")
        assert f'f"{drop.starts}' in source.read_text() and "exc_info=True" in source.read_text()


def test_ray_deprecation_warning_dropped_others_kept():
    """The warning Ray Train's state callback raises through Ray Data (:data:`quiet.WARNING_DROPS`) is
    really raised by Ray's own ExecutionOptions, and is gone after ``drop_ray_warnings``; another
    DeprecationWarning still shows."""
    import warnings

    from ray.data import ExecutionOptions, ExecutionResources

    with warnings.catch_warnings(record=True) as caught:   # restores the process's filters afterwards
        warnings.simplefilter("always")
        ExecutionOptions(exclude_resources=ExecutionResources.zero())
        assert any(str(w.message).startswith(quiet.WARNING_DROPS[0].starts) for w in caught)
        caught.clear()
        quiet.drop_ray_warnings()
        ExecutionOptions(exclude_resources=ExecutionResources.zero())
        warnings.warn("`Other.thing` is deprecated", DeprecationWarning)
        assert [str(w.message) for w in caught] == ["`Other.thing` is deprecated"]


def test_quiet_ray_drops_known_lines_and_survives_ray_trains_dictconfig(restore_logging):
    """The filter sits on the emitting logger, so Ray Train's own dictConfig of ``ray.train`` (as it
    runs in every Train worker) leaves it in place; other lines of the same logger still pass."""
    drop = next(d for d in quiet.LOG_DROPS if d.where.endswith("context.py"))
    logger = quiet.emitter(drop)
    sink = Collect()
    logger.addHandler(sink)
    logger.setLevel(logging.INFO)
    try:
        quiet.quiet_ray(False)
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
                                   "loggers": {"ray.train": {"level": "DEBUG", "handlers": [], "propagate": False}}})
        logger.info("Reporting training result 3: TrainingReport(checkpoint=None, metrics={'epoch': 3})")
        logger.info("Reporting ordering lock released")
        assert sink.messages == ["Reporting ordering lock released"]
        assert logging.getLogger("ray.tune").getEffectiveLevel() == logging.WARNING
        quiet.quiet_ray(False)   # idempotent: one filter, not two
        assert sum(isinstance(f, quiet.DropFilter) for f in logger.filters) == 1
        quiet.quiet_ray(True)    # verbose: Ray's lines are back
        logger.info("Reporting training result 4: TrainingReport(checkpoint=None, metrics={'epoch': 4})")
        assert sink.messages[-1].startswith("Reporting training result 4")
    finally:
        logger.removeHandler(sink)
        logger.setLevel(logging.NOTSET)


def test_worker_stream_filter_drops_the_cpp_line_only():
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    printed = []
    dispatcher.add_handler("ray_print_logs", lambda data: printed.append(data["lines"]))
    try:
        assert quiet.filter_worker_stream()
        assert quiet.filter_worker_stream()   # a second call does not wrap twice
        cpp = ("[2026-12-01 20:13:35,132 E 10721 10799] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' "
               "and ID: '4789d5b8' has constructor arguments in the object store and max_restarts > 0. If the arguments")
        dispatcher.emit({"pid": 10721, "is_err": True, "lines": [cpp, "Started training worker group of size 1"]})
        dispatcher.emit({"pid": 10721, "is_err": True, "lines": [cpp]})   # nothing left: nothing printed
        assert printed == [["Started training worker group of size 1"]]
    finally:
        dispatcher.remove_handler("ray_print_logs")


def test_a_warnings_traceback_is_dropped_with_it_across_batches():
    """The controller's "Failed to send resource request" warning and its traceback (as a loaded machine printed
    them) go; the lines around them stay, also when the traceback is split over two batches."""
    warning = ("Failed to send resource request for train-c15c. If this only happens transiently during network "
               "partition or CPU being overloaded, it's safe to ignore this error.")
    tb = ["Traceback (most recent call last):", '  File "/x/ray/train/v2/client.py", line 58, in send_resource_request',
          "    ray.get(", '  File "python/ray/_raylet.pyx", line 3471, in ray._raylet.CoreWorker.get_objects',
          "ray.exceptions.GetTimeoutError: Get timed out: some object(s) not ready."]
    state: dict = {}
    assert quiet.keep_lines(["before", warning, *tb[:2]], state) == ["before"]
    assert quiet.keep_lines([*tb[2:], "after", "Traceback (most recent call last):"], state) == [
        "after", "Traceback (most recent call last):"]   # another traceback is not ours to drop
    assert quiet.keep_lines([warning, "not a traceback"], {}) == ["not a traceback"]


EXIT_NOISE = r'''
import sys, weakref
sys.path.insert(0, sys.argv[1])
from services import quiet
if sys.argv[2] == "filtered":
    quiet.drop_termination_noise()

class Thing:
    pass

def stop_in_callback(frame, event, arg):
    # stands in for Ray's SIGTERM handler firing while the garbage collector runs a WeakSet callback
    if event == "call" and frame.f_code.co_name == "_remove":
        e = SystemExit(1)
        e.ray_terminate_msg = "The process receives a SIGTERM."
        raise e
    return None

members = weakref.WeakSet()
t = Thing()
members.add(t)
sys.settrace(stop_in_callback)
del t
sys.settrace(None)

class Other:
    def __del__(self):
        raise ValueError("a real problem stays visible")
Other()
print("still running")
'''


@pytest.mark.parametrize("mode", ["plain", "filtered"])
def test_termination_report_dropped_real_problems_kept(mode):
    proc = subprocess.run([sys.executable, "-c", EXIT_NOISE, str(REPO), mode], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "still running" in proc.stdout
    weakset_report = "WeakSet.__init__.<locals>._remove" in proc.stderr and "SystemExit: 1" in proc.stderr
    assert weakset_report == (mode == "plain"), proc.stderr
    assert "ValueError: a real problem stays visible" in proc.stderr


def test_quiet_exit_restores_the_previous_hook():
    before = sys.unraisablehook
    with quiet.quiet_exit():
        assert sys.unraisablehook is not before
    assert sys.unraisablehook is before
    with quiet.quiet_exit(verbose=True):
        assert sys.unraisablehook is before


def test_job_metadata_strings_only():
    meta = cluster.job_metadata("g1 (grid)", {"mode": "grid", "trials": 12, "search": None})
    assert meta == {"job_name": "g1 (grid)", "mode": "grid", "trials": "12"}


def test_metric_tags_and_nothing_outside_ray():
    assert metrics.tags(experiment="e", trial="t1", loss="gce", lr=1e-2) == {"experiment": "e", "trial": "t1", "loss": "gce", "lr": "0.01"}
    assert set(metrics.tags(experiment="e", trial="t", loss="l", lr=0.1)) == set(metrics.TAG_KEYS)
    assert all(name.startswith("robustloss_") for name in (metrics.PREFIX + k for k in metrics.GAUGES))
    assert metrics.export_epoch({"test_top1": 50.0}, experiment="e", trial="t", loss="ce", lr=0.1) == {}


# -------------------------------------------------------------------------- with a Ray runtime
@pytest.fixture(scope="module")
def dashboard_head():
    """A head with a dashboard (and so the Jobs API) and 2 CPUs, shared by this module's job tests."""
    head = start_head(dashboard=True, num_cpus=2)
    yield head
    stop_head(head)


EMBEDDED = r'''
import json, os, sys
import ray
from ray.util.state import get_actor, list_jobs
from services.cluster import connect, describe, shutdown

before = os.environ.get("RAY_ADDRESS")
ctx = connect(None, num_cpus=1, job_name=sys.argv[1], metadata={"mode": "grid", "experiment": sys.argv[1]})
own = ray.get_runtime_context().gcs_address

@ray.remote(num_cpus=0)
class Probe:
    def state_of_self(self):
        # no address, as Ray Train's placement-group cleaner asks (is_actor_alive -> get_actor)
        found = get_actor(ray.get_runtime_context().get_actor_id(), timeout=60)
        return found.state if found else None

probe = Probe.remote()
out = {"worker": ray.get(probe.state_of_self.remote(), timeout=180), "own": own, "before": before,
       "describe": describe(ctx)}
out["jobs"] = [j.metadata for j in list_jobs(detail=True)]
actor_id = probe._actor_id.hex()
os.environ.pop("RAY_ADDRESS")    # what a driver without the fix sees
try:
    found = get_actor(actor_id, timeout=30)
    out["without"] = found.state if found else None
except Exception as exc:
    out["without"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
os.environ["RAY_ADDRESS"] = own
shutdown()
out["after"] = os.environ.get("RAY_ADDRESS")
print("RESULT " + json.dumps(out))
'''


@pytest.mark.ray
def test_embedded_ray_beside_another_ray_finds_its_own(other_ray):
    """With another Ray running on the host, Ray's state API without an address (what the
    placement-group cleaner uses) cannot tell the two apart; connect() points it at the embedded one,
    in the driver and in the workers, names the job, and puts RAY_ADDRESS back on shutdown."""
    out = run_driver(EMBEDDED, "e13-grid")
    assert out["without"] != "ALIVE"   # the condition of the issue: found the wrong Ray, or "multiple"
    assert out["worker"] == "ALIVE"
    assert out["before"] is None and out["after"] is None
    assert other_ray.address.split(":")[1] != out["own"].split(":")[1]
    assert out["own"] in out["describe"] and "embedded" in out["describe"] and "dashboard http://" in out["describe"]
    assert {"job_name": "e13-grid", "mode": "grid", "experiment": "e13-grid"}.items() <= out["jobs"][0].items()
    # quiet by default: Ray's start-up lines are not printed
    assert "Token authentication is enabled" not in out["_stderr"] and "Started a local Ray instance" not in out["_stderr"]


METRICS = r'''
import json, sys, time, urllib.request
import ray
from services.cluster import connect, describe, shutdown

address, port, rows, want = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
said = describe(connect(address, job_name="m13"))

@ray.remote(num_cpus=0)
class Trial:   # a trial's gauges live in its worker process: scraped while it is alive
    def epoch(self, row, trial, loss, lr):
        from services.metrics import export_epoch
        return export_epoch(row, experiment="m13", trial=trial, loss=loss, lr=lr)

trials = [Trial.remote() for _ in rows]
sent = ray.get([t.epoch.remote(*r) for t, r in zip(trials, rows)])
deadline, body = time.time() + 90, ""
while time.time() < deadline:   # until every trial shows as many robustloss series as it was given values
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    lines = [ln for ln in body.splitlines() if "robustloss_" in ln and not ln.startswith("#")]
    if all(sum(f'trial="{t}"' in ln for ln in lines) >= n for t, n in want.items()):
        break
    time.sleep(0.5)
shutdown()
print("RESULT " + json.dumps({"sent": sent, "describe": said, "scraped": body}))
'''


@pytest.mark.ray
def test_trial_metrics_on_the_nodes_metrics_port(other_ray):
    """Two trials' epochs exported from Ray workers of a cluster; the head node's metrics port
    (scraped by the driver while the trials' workers live) shows each value with its trial's tags;
    None and NaN are not exported."""
    rows = [[{"epoch": 3, "test_top1": 41.5, "val_top1": None, "train_loss": 0.25}, "gce_q0.7_s0", "gce", 0.01],
            [{"epoch": 1, "test_top1": 12.0, "val_top1": 10.5, "train_loss": float("nan")}, "ce_s1", "ce", 0.1]]
    finite = [{k: float(v) for k, v in row.items() if v is not None and v == v} for row, *_ in rows]
    want = {trial: len(f) for (_, trial, _, _), f in zip(rows, finite)}
    out = run_driver(METRICS, other_ray.address, str(other_ray.metrics_port), json.dumps(rows), json.dumps(want),
                     env=NO_AUTH)
    assert f":{other_ray.port}" in out["describe"] and "embedded" not in out["describe"]   # names the cluster joined
    seen = [s for s in samples(out["scraped"]) if s[1].get("experiment") == "m13"]
    for (row, trial, loss, lr), expect, sent in zip(rows, finite, out["sent"]):
        got = {name: value for name, labels, value in seen
               if labels["trial"] == trial and labels["loss"] == loss and labels["lr"] == f"{lr:g}"}
        # Ray exports a metric `robustloss_x` as `ray_robustloss_x` (its namespace)
        assert got == {metrics.exported_name(k): v for k, v in expect.items()}, (trial, got)
        assert sent == {metrics.PREFIX + k: v for k, v in expect.items()}


@pytest.mark.ray
def test_stopping_only_our_own_head():
    """The way deploy/README.md says to stop a `ray start --block` head: SIGTERM to its pid. All its
    processes end; nothing else is signalled (the rest of the machine is never looked at)."""
    head = start_head()

    def commands():   # the executable of each process of the head's session
        out = []
        for pid in session_pids(head.proc.pid):
            try:
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode())
            except OSError:
                pass
        return out

    try:
        deadline = time.time() + 60
        while not any(c.endswith("/raylet") for c in commands()) and time.time() < deadline:
            time.sleep(0.5)   # the GCS listens first, the raylet follows
        running = commands()
        assert any(c.endswith("/gcs_server") for c in running) and any(c.endswith("/raylet") for c in running), running
    except BaseException:
        stop_head(head)
        raise
    assert stop_head(head) == []


IN_JOB = r'''
import json, os
from services import storage as st
out = {"cwd": os.getcwd(), "package": st.ray_package_dir(), "default": st.resolve_user_path(None)}
try:
    st.resolve_user_path("results")
    out["relative"] = "accepted"
except st.StorageError as exc:
    out["relative"] = str(exc)
print("RESULT " + json.dumps(out))
'''


@pytest.mark.ray
def test_submitted_job_knows_it_runs_in_rays_package(tmp_path, dashboard_head):
    """Inside `ray job submit --working-dir`, the driver's directory is Ray's temporary package: the
    storage rules see it, refuse a relative path there and take ROBUSTLOSS_STORAGE from the job's
    runtime env."""
    script = tmp_path / "in_job.py"
    script.write_text(IN_JOB)
    store = tmp_path / "durable"
    proc = submit(dashboard_head, sys.executable, str(script), runtime_env={"env_vars": {"ROBUSTLOSS_STORAGE": str(store)}})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["package"] == out["cwd"] and out["cwd"].startswith(dashboard_head.temp_dir)   # Ray's copy, not REPO
    assert out["default"] == str(store)
    assert out["package"] in out["relative"] and "\n" not in out["relative"]


# ------------------------------------------------------------------------------------- the CLI
DATA = ["--dataset", "synthetic", "--classes", "10", "--dataset-args", "train_per_class=300,test_per_class=10",
        "--batch-size", "32"]


@pytest.mark.ray
@pytest.mark.slow
def test_job_submit_without_storage_path_keeps_results_and_exports_metrics(tmp_path, dashboard_head):
    """`ray job submit --working-dir .` with ROBUSTLOSS_STORAGE in the job's runtime env and no
    --storage-path: results land there, nothing under Ray's temp dir; during the sweep the head's
    metrics port shows robustloss_test_top1 for the running trials, tagged with trial and loss."""
    head = dashboard_head
    store = tmp_path / "store"
    grid = tmp_path / "grid.yaml"
    grid.write_text("lrs: [0.05]\nlosses:\n  gce:\n    q: [0.5, 0.7]\n")
    cmd = [RAY_BIN, "job", "submit", "--address", f"http://127.0.0.1:{head.dashboard_port}", "--working-dir", str(REPO),
           "--runtime-env-json", json.dumps({"env_vars": {"ROBUSTLOSS_STORAGE": str(store)}}), "--",
           sys.executable, "sweeps/run.py", "--mode", "grid", "--name", "js13", "--losses", "gce", "--epochs", "4",
           "--grid-file", str(grid), "--max-concurrent-trials", "2", *DATA]
    log = tmp_path / "submit.log"   # a file, not a pipe: the job's log is long and nobody reads it meanwhile
    seen: set = set()
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, env={**os.environ, **NO_AUTH}, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.time() + 500
        while proc.poll() is None and time.time() < deadline:
            seen |= {(l["trial"], l["loss"]) for n, l, _ in scrape(head.metrics_port)
                     if n == metrics.exported_name("test_top1") and l.get("experiment") == "js13"}
            time.sleep(0.3)
        proc.wait(timeout=60)
    output = log.read_text()
    assert proc.returncode == 0 and "succeeded" in output, output[-4000:]   # exit 0 alone: also when stopped
    summary = json.loads((store / "js13" / "summary.json").read_text())
    assert len(summary["runs"]) == 2 and all(r["status"] == "ok" for r in summary["runs"])
    # nothing of the experiment's own lives under Ray's temp dir (Tune keeps a staging copy of its logger
    # files in <session>/artifacts/.../driver_artifacts, synced to the storage; Ray deletes it with the session)
    temp = Path(head.temp_dir)
    for pattern in ("summary.json", "robustloss.json", "checkpoint_*", "state.pt", "spec.json"):
        assert not [p for p in temp.rglob(pattern) if "js13" in str(p)], pattern
    assert not [p for p in temp.rglob("js13") if "runtime_resources" in str(p) or "_ray_pkg_" in str(p)]
    trial_dirs = [d.name for d in (store / "js13").iterdir() if (d / "params.json").exists()]
    assert seen and {loss for _, loss in seen} == {"gce"}
    assert all(any(trial in d for d in trial_dirs) for trial, _ in seen), (seen, trial_dirs)


@pytest.mark.ray
def test_multi_worker_trials_are_named_train_runs_on_a_head_with_just_their_cpus(tmp_path, dashboard_head):
    """A `--mode grid --num-workers 2` sweep from a terminal to a 2-CPU head: each trial (a Tune function
    driving a Ray Train run of two 1-CPU workers) gets both CPUs, its driver none (with a sliver of a CPU
    the workers never started: 1.99 CPUs left), and appears in the dashboard's Train runs API under its
    hyperparameters' name, with its two workers and the sweep's job; the default output stays quiet."""
    head = dashboard_head
    grid = tmp_path / "grid.yaml"
    grid.write_text("lrs: [0.05]\nlosses:\n  gce:\n    q: [0.7]\n")
    env = {**os.environ, **NO_AUTH, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "sweeps/run.py", "--mode", "grid", "--name", "ddpg", "--losses", "gce",
                           "--grid-file", str(grid), "--epochs", "2", "--num-workers", "2", "--address", head.address,
                           "--storage-path", str(tmp_path / "store"), *DATA],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert_quiet_output(proc.stdout + proc.stderr)
    row = json.loads((tmp_path / "store" / "ddpg" / "summary.json").read_text())["runs"][0]
    assert row["status"] == "ok" and row["num_workers"] == 2 and row["epochs"] == 2
    runs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{head.dashboard_port}/api/train/v2/runs/v1",
                                            timeout=30))["train_runs"]
    ours = [r for r in runs if r["run_settings"]["run_config"]["storage_path"].rstrip("/").endswith("ddpg/train")]
    assert len(ours) == 1, [r["name"] for r in runs]
    run = ours[0]
    assert run["name"].startswith("gce_q0.7_lr0.05_s0_") and run["status"] == "FINISHED"
    assert len(run["attempts"][-1]["workers"]) == 2
    jobs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{head.dashboard_port}/api/jobs/", timeout=30))
    assert {j["job_id"]: (j.get("metadata") or {}).get("job_name") for j in jobs}[run["job_id"]] == "ddpg (grid)"
    assert (tmp_path / "store" / "ddpg" / "train" / run["name"]).is_dir()   # the run's folder has the same name
