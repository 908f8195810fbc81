"""End to end on the embedded Ray and on a separately started cluster (CPU, tiny synthetic data).

Each CLI call starts its own Ray (~8 s) and every Tune trial costs ~2.5 s, so these tests keep
trials few and data tiny; they are the slowest part of the suite (a few minutes together).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import CLI, REPO, assert_quiet_output, free_port, run_cli, wait_port
from rayheads import kill_session

pytestmark = pytest.mark.ray

TINY = ["--dataset", "synthetic", "--classes", "10", "--dataset-args", "train_per_class=20,test_per_class=10",
        "--batch-size", "32", "--quiet"]
DEFAULT_OUTPUT = [a for a in TINY if a != "--quiet"]   # the CLI's default terminal output: the progress line on
RUN_KEYS = {"loss", "params", "logit_bias", "lr", "seed", "test_top1", "test_top5", "compute_seconds"}


def write_grid(path: Path, body: str) -> str:
    path.write_text(body)
    return str(path)


def result_rows(trial_dir: Path) -> list[dict]:
    """Rows of the trial's result.json. Tune's driver re-copies the whole experiment folder to the
    storage at every snapshot (pyarrow copy_files: truncate, then write), so a read during a copy, or
    after a kill that landed in one, can see the file short: a cut last line is skipped."""
    f = trial_dir / "result.json"
    rows = []
    for line in f.read_text().splitlines() if f.exists() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    return rows


def trial_dirs(exp: Path) -> list[Path]:
    return sorted(p for p in exp.iterdir() if p.is_dir() and (p / "params.json").exists())


COMPARE_KEYS = {"selection", "lr_protocol", "top1_mean", "top1_sem", "gap", "gap_ci95", "verdict", "trial_epochs",
                "worker_seconds"}
VAL_KEYS = {"val_top1", "val_top1_clean", "best_epoch", "test_top1_at_best", "memorized"}


def test_all_modes_end_to_end(tmp_path, other_ray):
    """grid + analytic + compare (`--mode all`) on noisy data, then `--mode compare` again by name with
    the oracle selection. The grid is a first-class Tune experiment: flat hyperparameters in Tune's own
    analysis, readable trial folders, TensorBoard scalars, summary.csv. The embedded Ray runs beside
    another Ray on the host, and the default output (Tune's table on) is quiet."""
    grid = write_grid(tmp_path / "grid.yaml", "lrs: [0.1]\nlosses:\n  mae:\n    logit_bias: [0.0, 1.0]\n  gce:\n    q: [0.5, 0.7]\n")
    out = tmp_path / "all.json"
    proc = run_cli(["--mode", "all", "--name", "e2e", "--losses", "mae,gce", "--epochs", "2", "--seeds", "2",
                    "--noise", "symmetric", "--noise-rate", "0.4", "--grid-file", grid,
                    "--storage-path", str(tmp_path / "store"), "--json-out", str(out), *DEFAULT_OUTPUT])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    store = tmp_path / "store"
    exp = store / "e2e-grid"
    assert_quiet_output(proc.stdout + proc.stderr, max_line=120)
    assert "WARNING" not in proc.stdout + proc.stderr and "Bracket" not in proc.stdout   # no Tune internals
    # each phase names its experiment in the storage, not its staging copy in Ray's temp dir, and shows progress
    assert f"== grid sweep -> {exp}" in proc.stdout and f"== analytic sweep -> {store / 'e2e-analytic'}" in proc.stdout
    assert "grid  8/8 trials  16/16 trial-epochs" in proc.stdout and "analytic  4/4 trials  8/8 trial-epochs" in proc.stdout
    assert "driver_artifacts" not in proc.stdout + proc.stderr
    grid_summary = json.loads((exp / "summary.json").read_text())
    assert len(grid_summary["runs"]) == 2 * 2 * 2  # 2 losses x 2 params x 2 seeds
    assert all(r["status"] == "ok" and r["epochs"] == 2 and VAL_KEYS <= set(r) for r in grid_summary["runs"])
    assert all(r["val_top1"] is not None and 1 <= r["best_epoch"] <= 2 for r in grid_summary["runs"])
    assert grid_summary["lr_protocol"] == "searched"

    # Tune sees the hyperparameters
    from ray.tune import ExperimentAnalysis

    ea = ExperimentAnalysis(str(exp))
    df = ea.dataframe()
    assert {"config/lr", "config/loss", "config/logit_bias", "config/q"} <= set(df.columns)
    assert "config/trial" not in df.columns and len(df) == 8
    best = ea.get_best_config(metric="test_top1", mode="max")
    assert {"loss", "lr", "seed", "logit_bias"} <= set(best)
    by_config = {(r["loss"], r["lr"], r["seed"], r["logit_bias"], (r["params"] or {}).get("q")): r["test_top1"]
                 for r in grid_summary["runs"]}
    assert max(by_config.values()) == by_config[(best["loss"], best["lr"], best["seed"], best["logit_bias"], best.get("q"))]
    names = [d.name for d in trial_dirs(exp)]
    assert len(names) == 8
    assert sum(n.startswith("gce_q0.7_") and "_lr0.1_" in n for n in names) == 2   # loss, q, lr in the name...
    assert sum(n.startswith("mae_eps1_lr0.1_s1_") for n in names) == 1               # ...ε and seed too
    # TensorBoard's own reader finds the per-epoch test accuracy
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((exp / names[0]).glob("events.out.tfevents.*"))))
    events.Reload()
    assert [e.step for e in events.Scalars("ray/tune/test_top1")] == [1, 2]
    # ...and its HParams hold what varies (plus loss and lr), not the ~30 fixed settings
    from tensorboard.plugins.hparams import plugin_data_pb2

    for d in trial_dirs(exp):
        events = EventAccumulator(str(next(d.glob("events.out.tfevents.*"))))
        events.Reload()
        start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        logged = set(plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams)
        assert logged == {"loss", "lr", "seed", "logit_bias"} | ({"q"} if d.name.startswith("gce") else set()), d.name
    # the run ends with one verdict line per loss, the analytic side labelled by what it computed
    last = proc.stdout.strip().splitlines()[-2:]
    assert sorted(ln.split(" vs grid ")[0] for ln in last) == ["GCE+", "MAE*"], last
    assert all("trial-epochs = 0.50" in ln and " gap " in ln for ln in last), last
    csv_rows = (exp / "summary.csv").read_text().splitlines()
    assert len(csv_rows) == 9 and {"loss", "lr", "q", "val_top1", "test_top1"} <= set(csv_rows[0].split(","))

    analytic = json.loads((store / "e2e-analytic" / "summary.json").read_text())
    # searched LR protocol: the analytic side trains its parameters at every grid LR (here one), and pays for it
    assert {r["loss"] for r in analytic["runs"]} == {"mae", "gce"} and len(analytic["runs"]) == 2 * 2
    assert all(r["epochs"] == 2 for r in analytic["runs"])
    cal = json.loads((store / "e2e-analytic" / "calibration.json").read_text())["losses"]
    assert cal["mae"]["logit_bias"] > 0 and cal["gce"]["params"]["q"] > 0
    # the analytic trials' folders carry what was computed (q, ε), though nothing varies there
    names = [d.name for d in trial_dirs(store / "e2e-analytic")]
    assert sum(n.startswith(f"gce_q{cal['gce']['params']['q']:.3g}_") and "_lr0.1_s" in n for n in names) == 2, names
    assert sum(n.startswith(f"mae_eps{cal['mae']['logit_bias']:.3g}_lr0.1_s") for n in names) == 2, names
    assert (store / "e2e-analytic" / "error_curves.png").stat().st_size > 0
    for ext in ("md", "csv", "png", "json"):
        assert (store / "e2e-compare" / f"compare.{ext}").stat().st_size > 0
    report = (store / "e2e-compare" / "compare.md").read_text()   # the analytic rows by their computed form
    assert all(f"| {label} | analytic |" in report for label in ("MAE*", "GCE+")), report
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    assert len(rows) == 4 and {r["mode"] for r in rows} == {"grid", "analytic"}
    assert all(COMPARE_KEYS <= set(r) and r["selection"] == "val" for r in rows)
    analytic_rows = {r["loss"]: r for r in rows if r["mode"] == "analytic"}
    from services import compare as cmp

    for loss, r in analytic_rows.items():
        # paired over the 2 shared seeds; with tiny data both differences can be equal (no spread): undetermined
        assert r["trial_epochs"] == 2 * 2 and r["interval"] == "paired"
        assert r["verdict"] == cmp.verdict(r["gap_ci95"]) and r["verdict"] in cmp.VERDICTS
        assert r["gap_ci95"] is None or r["gap_ci95"][0] <= r["gap"] <= r["gap_ci95"][1]
        spent = sum(x["compute_seconds"] for x in analytic["runs"] if x["loss"] == loss)
        assert r["worker_seconds"] >= spent > 0
    assert all(RUN_KEYS <= set(r) for r in payload["runs"]) and len(payload["runs"]) == 12

    oracle = run_cli(["--mode", "compare", "--grid", "e2e-grid", "--analytic", "e2e-analytic", "--name", "cmp2",
                      "--selection", "test", "--storage-path", str(store), "--json-out", str(tmp_path / "cmp.json")])
    assert oracle.returncode == 0, oracle.stderr[-2000:]
    test_rows = json.loads((tmp_path / "cmp.json").read_text())["rows"]
    assert all(r["selection"] == "test" for r in test_rows) and "oracle" in oracle.stdout
    for r in test_rows:   # the oracle picks the configuration with the best mean test accuracy
        runs = [x for x in (grid_summary if r["mode"] == "grid" else analytic)["runs"] if x["loss"] == r["loss"]]
        means = {}
        for x in runs:
            means.setdefault((json.dumps(x["params"], sort_keys=True), x["logit_bias"], x["lr"]), []).append(x["test_top1"])
        assert r["top1_mean"] == pytest.approx(max(sum(v) / len(v) for v in means.values()))


def test_train_two_workers_ddp(tmp_path, other_ray):
    """`--mode train --num-workers 2`: one Ray Train run, DDP over two gloo workers, on the embedded Ray
    beside another Ray on the host; the default output is quiet (no Train report lines, no tracebacks)."""
    out = tmp_path / "train.json"
    proc = run_cli(["--mode", "train", "--losses", "mae", "--logit-bias", "auto", "--lr", "0.05", "--epochs", "2",
                    "--num-workers", "2", "--name", "ddp", "--storage-path", str(tmp_path / "store"),
                    "--json-out", str(out), *DEFAULT_OUTPUT])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert_quiet_output(proc.stdout + proc.stderr)
    run = json.loads(out.read_text())["runs"][0]
    assert run["status"] == "ok" and run["epochs"] == 2 and run["num_workers"] == 2
    assert run["logit_bias"] == pytest.approx(1.27, abs=0.03)  # Eq. 4 at K = 10, c = 0.25
    assert run["compute_seconds"] == pytest.approx(2 * run["trial_seconds"])
    assert list((tmp_path / "store" / "ddp").glob("checkpoint_*"))
    # rank 0 logged every epoch to TensorBoard itself (a train run has no Tune driver)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = []
    for f in (tmp_path / "store" / "ddp" / "tracking").glob("events.out.tfevents.*"):
        ea = EventAccumulator(str(f))
        ea.Reload()
        if "test_top1" in ea.Tags()["scalars"]:
            logged += [(e.step, e.value) for e in ea.Scalars("test_top1")]
    assert [step for step, _ in logged] == [1, 2] and logged[-1][1] == pytest.approx(run["test_top1"])


def _kill_mid_sweep(tmp_path):
    """Start a 5-trial grid (1 at a time, 4 epochs), SIGKILL the driver once 2 trials finished and a
    third is running. Returns (CLI args, experiment folder, {trial dir: result rows after the kill},
    names of the trials that had finished).

    Epochs take ~1 s here (1000 examples per class) so that a trial is seen mid-run: with the tiny
    data of the other tests a whole trial lasts a fraction of a second and the poll can miss it."""
    grid = write_grid(tmp_path / "grid.yaml", "lrs: [0.01, 0.02, 0.03, 0.04, 0.05]\nlosses:\n  ce: {}\n")
    store = tmp_path / "store"
    data = [a.replace("train_per_class=20", "train_per_class=1000") for a in TINY]
    assert data != TINY
    # a checkpoint after every epoch (the default policy checkpoints a trial this short only after its last)
    args = ["--mode", "grid", "--name", "kr", "--losses", "ce", "--epochs", "4", "--grid-file", grid,
            "--max-concurrent-trials", "1", "--checkpoint-every", "1", "--storage-path", str(store), *data]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    proc = subprocess.Popen(CLI + args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    exp = store / "kr"
    seen: dict[str, int] = {}   # trial folder -> most epochs seen logged (a read during a copy can be short)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for 2 finished trials and a third one started
        if exp.exists():
            for d in trial_dirs(exp):
                seen[d.name] = max(seen.get(d.name, 0), len(result_rows(d)))
            if sum(n == 4 for n in seen.values()) >= 2 and any(0 < n < 4 for n in seen.values()):
                break
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended (rc {proc.returncode}) before it was seen mid-trial: {seen}")
        time.sleep(0.2)
    else:
        kill_session(proc.pid)
        pytest.fail(f"sweep did not progress: {seen}")
    kill_session(proc.pid)
    proc.wait()
    before = {d.name: result_rows(d) for d in trial_dirs(exp)}
    finished = [n for n, k in seen.items() if k == 4]
    return args, exp, before, finished


def test_kill_and_resume_grid_repeats_nothing(tmp_path):
    """SIGKILL the driver mid-sweep; `--resume` finishes it without re-running finished trials or finished
    epochs. There is one resume path (services/salvage.py: from the trials' own checkpoints), so it must
    not matter whether the kill also cut Tune's experiment state short (Tune writes it in place; seen in
    CI): the test cuts it on purpose.

    The kill can also cut any file the driver was re-copying to the storage (result.json of a finished
    trial included, seen in CI), so finished trials are judged by what was seen before the kill and
    "not re-run" means: nothing was appended to their result.json."""
    args, exp, before, finished = _kill_mid_sweep(tmp_path)
    newest = sorted(exp.glob("experiment_state-*.json"))[-1]
    newest.write_text(newest.read_text()[:100])
    # a bare --resume: the stored request (robustloss.json) is the sweep to continue
    resumed = run_cli(["--resume", "--name", "kr", "--storage-path", args[args.index("--storage-path") + 1]],
                      env={"TUNE_GLOBAL_CHECKPOINT_S": "0"})
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"--resume: {len(finished)} trial(s) finished and kept" in resumed.stdout or \
        "trial(s) finished and kept" in resumed.stdout   # (a trial may finish between the poll and the kill)
    after = {d.name: result_rows(d) for d in trial_dirs(exp)}
    for n in finished:  # finished trials were not re-run
        assert after[n] == before[n]
    summary = json.loads((exp / "summary.json").read_text())
    assert len(summary["runs"]) == 5 and all(r["status"] == "ok" and r["epochs"] == 4 for r in summary["runs"])
    assert sorted(r["lr"] for r in summary["runs"]) == [0.01, 0.02, 0.03, 0.04, 0.05]
    assert len({r["key"] for r in summary["runs"]}) == 5
    by_lr: dict = {}
    for d in trial_dirs(exp):
        try:
            lr = json.loads((d / "params.json").read_text())["lr"]
        except ValueError:   # the kill can cut a trial's params.json too
            continue
        by_lr.setdefault(lr, []).extend(r["epoch"] for r in result_rows(d))
    for lr, epochs in by_lr.items():  # no logged epoch trained twice (a killed driver may not have logged the
        assert len(epochs) == len(set(epochs)), (lr, epochs)   # last epochs its trial checkpointed: summary has 4)
    # a second --resume, with the request's own flags, finds everything finished, runs nothing, keeps the rows
    again = run_cli(args + ["--resume"])
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "5 trial(s) finished and kept, 0 to run" in again.stdout
    rows_again = json.loads((exp / "summary.json").read_text())["runs"]
    strip = lambda rows: sorted((r["key"], r["test_top1"], r["val_top1"], r["epochs"]) for r in rows)
    assert strip(rows_again) == strip(summary["runs"])


def test_sweep_against_started_cluster(tmp_path):
    """`ray start --head` in the test, `--address` to it: the sweep runs there, results in storage."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = free_port()
    auth = {**os.environ, "RAY_AUTH_MODE": "token"}  # as the README: token auth, clients set RAY_AUTH_MODE
    subprocess.run([ray_bin, "get-auth-token", "--generate"], capture_output=True, env=auth, timeout=60)
    # --block keeps `ray start` in the foreground, so this cluster (and only it) is stopped by killing
    # its session at the end; `ray stop` would stop every Ray cluster on the machine.
    # its own --temp-dir (else it rewrites /tmp/ray/ray_current_cluster for everyone) and ports
    temp = Path(tempfile.mkdtemp(prefix="rl-", dir="/tmp"))
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", f"--temp-dir={temp}",
                             f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}"],
                            env=auth, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=120)
        time.sleep(3)  # the raylet registers shortly after the GCS port opens
        grid = write_grid(tmp_path / "grid.yaml", "lrs: [0.05]\nlosses:\n  gce:\n    q: [0.5, 0.7]\n")
        proc = run_cli(["--mode", "grid", "--name", "remote", "--losses", "gce", "--epochs", "1", "--grid-file", grid,
                        "--address", f"127.0.0.1:{port}", "--storage-path", str(tmp_path / "store"), *TINY],
                       env={"RAY_AUTH_MODE": "token"})
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("Ray cluster at "))
        assert "embedded Ray" not in proc.stdout and line.split(",")[0].endswith(f":{port}")
        summary = json.loads((tmp_path / "store" / "remote" / "summary.json").read_text())
        assert len(summary["runs"]) == 2 and all(r["status"] == "ok" for r in summary["runs"])
    finally:
        kill_session(head.pid)
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def test_optuna_asha_search_persists_and_resumes(tmp_path, other_ray):
    """`--search optuna`: TPE samples the grid's ranges on noisy-validation top-1, ASHA stops weak trials
    (told to Optuna as PRUNED, not COMPLETE); the study lives in <storage>/<name>/optuna.journal, and
    `--resume` with a larger budget continues the same study. Its first run is a small `--mode grid`
    with the default output, beside another Ray on the host: quiet, and Tune's table shows the searched
    hyperparameters."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    grid = write_grid(tmp_path / "grid.yaml", "lrs: [0.01, 0.1]\nlosses:\n  gce:\n    q: [0.3, 0.9]\n")
    out = tmp_path / "o.json"
    args = ["--mode", "grid", "--search", "optuna", "--name", "opt", "--losses", "gce", "--epochs", "4",
            "--grid-file", grid, "--storage-path", str(tmp_path / "store"), "--json-out", str(out)]
    proc = run_cli(args + ["--num-samples", "3", *DEFAULT_OUTPUT])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert_quiet_output(proc.stdout + proc.stderr)
    best_line = [ln for ln in proc.stdout.splitlines() if ln.startswith("best GCE: ")][-1]
    assert "q=" in best_line and " lr " in best_line, best_line   # the run ends with its best configuration
    assert "optuna search" in proc.stdout   # the summary names the mode's search
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 3 and all(r["loss"] == "gce" for r in runs)
    assert all(0.3 <= r["params"]["q"] <= 0.9 and 0.01 <= r["lr"] <= 0.1 for r in runs)
    assert len({r["params"]["q"] for r in runs}) == 3  # sampled, not a grid
    journal = JournalStorage(JournalFileBackend(str(tmp_path / "store" / "opt" / "optuna.journal")))
    trials = optuna.load_study(study_name="opt", storage=journal).trials
    assert len(trials) == 3 and all("q" in t.params and "lr" in t.params for t in trials)
    state_of = {round(t.params["q"], 9): t.state for t in trials}
    for r in runs:   # ASHA-stopped trials are PRUNED in the study, finished ones COMPLETE with their val_top1
        want = optuna.trial.TrialState.COMPLETE if r["status"] == "ok" else optuna.trial.TrialState.PRUNED
        assert state_of[round(r["params"]["q"], 9)] == want, (r, state_of)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(t.value == next(r["val_top1"] for r in runs if abs(r["params"]["q"] - t.params["q"]) < 1e-9)
                            for t in complete)

    more = run_cli(args + ["--num-samples", "5", "--resume", *TINY])
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    assert len(optuna.load_study(study_name="opt", storage=journal).trials) == 5
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 5 and len({r["key"] for r in runs}) == 5
