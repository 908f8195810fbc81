"""Watch a sweep as deploy/README.md §4 says, on this machine, and keep the evidence (issue 13).

A head with the dashboard and a metrics export port (tests/rayheads.py: its own session, temp dir and
ports); Prometheus started with the scrape config Ray wrote into that head's session; a small grid
submitted with `ray job submit` (named by --submission-id and job metadata); while it runs, headless
Chromium screenshots of the dashboard's Jobs and Actors views; afterwards Prometheus is asked for each
trial's `ray_robustloss_test_top1`. Everything it started is stopped by pid.

Not part of pytest: it needs `prometheus` and `chromium` on PATH (Debian: `apt-get install prometheus
chromium`), which CI does not install.

    python tests/deploy/live_dashboard.py --images deploy/images --out benchmarks/results/live_dashboard.md
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/: conftest, rayheads

from conftest import REPO, free_port, wait_port   # noqa: E402
from rayheads import NO_AUTH, RAY_BIN, start_head, stop_head   # noqa: E402

EXPERIMENT = "live-grid"


def get_json(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url, timeout=10).read().decode())


def screenshot(url: str, path: Path, wait_ms: int = 12000) -> None:
    """One headless Chromium screenshot of ``url`` after ``wait_ms`` of page time."""
    profile = tempfile.mkdtemp(prefix="rl-chrome-")
    try:
        subprocess.run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", "--window-size=1500,900", f"--virtual-time-budget={wait_ms}",
                        f"--screenshot={path}", url], capture_output=True, timeout=120, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=str(REPO / "deploy" / "images"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "live_dashboard.md"))
    args = ap.parse_args(argv)
    for exe in ("prometheus", "chromium"):
        if shutil.which(exe) is None:
            print(f"error: {exe} not on PATH (Debian: apt-get install prometheus chromium)", file=sys.stderr)
            return 2
    images = Path(args.images)
    images.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rl-live-"))
    head = start_head(dashboard=True, num_cpus=2)
    prom = None
    report = {"ray_temp_dir": head.temp_dir}
    try:
        config = Path(head.temp_dir) / "session_latest" / "metrics" / "prometheus" / "prometheus.yml"
        report["prometheus_config"] = config.read_text()
        report["scrape_interval"] = next((ln.split(":", 1)[1].strip() for ln in report["prometheus_config"].splitlines()
                                          if "scrape_interval" in ln), "Prometheus' default (1m)")
        # Ray's config as written, with a 2 s scrape interval instead of its 10 s: this sweep's epochs last ~2 s
        ours = work / "prometheus.yml"
        ours.write_text(re.sub(r"scrape_interval:\s*\S+", "scrape_interval: 2s", report["prometheus_config"]))
        pport = free_port()
        prom = subprocess.Popen(["prometheus", f"--config.file={ours}", f"--web.listen-address=127.0.0.1:{pport}",
                                 f"--storage.tsdb.path={work / 'tsdb'}"], stdout=subprocess.DEVNULL,
                                stderr=open(work / "prometheus.log", "w"), start_new_session=True)
        wait_port(pport, timeout=60)
        deadline = time.time() + 120
        while time.time() < deadline:   # until Prometheus scrapes the head (found through Ray's discovery file)
            targets = get_json(f"http://127.0.0.1:{pport}/api/v1/targets")["data"]["activeTargets"]
            if any(t["health"] == "up" for t in targets):
                break
            time.sleep(1)
        report["targets"] = sorted(t["scrapeUrl"] for t in targets if t["health"] == "up")
        grid = work / "grid.yaml"
        grid.write_text("lrs: [0.05]\nlosses:\n  gce:\n    q: [0.3, 0.5, 0.7]\n")
        dash = f"http://127.0.0.1:{head.dashboard_port}"
        submission = f"{EXPERIMENT}-{int(time.time())}"
        cmd = [RAY_BIN, "job", "submit", "--address", dash, "--working-dir", str(REPO), "--no-wait",
               "--submission-id", submission, "--metadata-json", json.dumps({"job_name": f"{EXPERIMENT} (grid)"}),
               "--runtime-env-json", json.dumps({"env_vars": {"ROBUSTLOSS_STORAGE": str(work / "store")}}), "--",
               sys.executable, "sweeps/run.py", "--mode", "grid", "--name", EXPERIMENT, "--losses", "gce",
               "--epochs", "8", "--grid-file", str(grid), "--max-concurrent-trials", "2", "--dataset", "synthetic",
               "--classes", "10", "--dataset-args", "train_per_class=2500,test_per_class=20", "--batch-size", "32"]
        env = {**os.environ, **NO_AUTH}
        subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True, timeout=300)
        t0 = time.time()
        while time.time() - t0 < 300:   # until two trials run (their actors are alive)
            actors = get_json(f"{dash}/api/v0/actors?limit=100&detail=1")["data"]["result"]["result"]
            names = [a.get("repr_name") or a.get("class_name") for a in actors if a.get("state") == "ALIVE"]
            if sum(str(n).startswith("gce_") for n in names) >= 2:
                break
            time.sleep(1)
        report["alive_actor_reprs"] = sorted(map(str, names))
        time.sleep(8)   # a few epochs reported
        screenshot(f"{dash}/#/jobs", images / "dashboard-jobs.png")
        screenshot(f"{dash}/#/actors", images / "dashboard-actors.png")
        status = ""
        while time.time() - t0 < 900:
            status = get_json(f"{dash}/api/jobs/{submission}")["status"]
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(2)
        report["job_status"] = status
        report["job_seconds"] = round(time.time() - t0, 1)
        screenshot(f"{dash}/#/jobs/{submission}", images / "dashboard-job.png")
        time.sleep(6)   # one more scrape after the last epoch
        query = f'last_over_time(ray_robustloss_test_top1{{experiment="{EXPERIMENT}"}}[15m])'
        found = get_json(f"http://127.0.0.1:{pport}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
        series = [{"trial": r["metric"].get("trial"), "loss": r["metric"].get("loss"), "lr": r["metric"].get("lr"),
                   "test_top1": float(r["value"][1])} for r in found["data"]["result"]]
        report["prometheus_query"] = query
        report["prometheus_series"] = sorted(series, key=lambda r: r["trial"])
        rng = get_json(f"http://127.0.0.1:{pport}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": f'ray_robustloss_epoch{{experiment="{EXPERIMENT}"}}', "start": t0 - 5, "end": time.time(), "step": 2}))
        report["epochs_seen_per_trial"] = {r["metric"]["trial"]: sorted({int(float(v)) for _, v in r["values"]})
                                           for r in rng["data"]["result"]}
        summary = json.loads((work / "store" / EXPERIMENT / "summary.json").read_text())
        report["summary_test_top1"] = {f"q={r['params']['q']:g}": r["test_top1"] for r in summary["runs"]}
        report["summary_trials"] = sorted(round(r["params"]["q"], 3) for r in summary["runs"])
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=30)
        stop_head(head)
    lines = [f"# A sweep watched live: dashboard and Prometheus ({time.strftime('%Y-%m-%d %H:%M UTC')})", "",
             "`python tests/deploy/live_dashboard.py` on the 2-core machine: Ray "
             f"{subprocess.run([RAY_BIN, '--version'], capture_output=True, text=True).stdout.strip()}, "
             f"{subprocess.run(['prometheus', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}.", "",
             f"- job `{submission}`: {report['job_status']} after {report['job_seconds']} s",
             f"- Prometheus: Ray's generated config (`session_latest/metrics/prometheus/prometheus.yml`, file-based discovery), "
             f"its scrape interval ({report['scrape_interval'].split()[0]}) set to 2s; targets up: {report['targets']}",
             f"- trial actors alive mid-sweep (dashboard Actors view, repr): {report['alive_actor_reprs']}",
             f"- Prometheus answered `{report['prometheus_query']}`:", ""]
    lines += ["| trial | loss | lr | test_top1 |", "|---|---|---|---|"]
    lines += [f"| {r['trial']} | {r['loss']} | {r['lr']} | {r['test_top1']:.2f} |" for r in report["prometheus_series"]]
    lines += ["", f"- `ray_robustloss_epoch` values Prometheus saw per trial: {report['epochs_seen_per_trial']}",
              f"- the sweep's own summary.json, final test_top1 per trial: {report['summary_test_top1']}",
              f"- screenshots: {', '.join(sorted(p.name for p in images.glob('dashboard-*.png')))}", ""]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    ok = report["job_status"] == "SUCCEEDED" and len(report["prometheus_series"]) == 3
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
