"""A sweep of small trials: the CLI's grid against the plain-process floor, on the same configurations.

    .venv/bin/python benchmarks/sweep_overhead.py                 # 8 and 32 trials of ~2 s, 4 of ~30 s (~6 min)
    .venv/bin/python benchmarks/sweep_overhead.py --variants 8x2s --repo /path/to/other/checkout
    .venv/bin/python benchmarks/sweep_overhead.py --smoke --out /tmp/x   # CI: 2 trials of 1 epoch
    .venv/bin/python benchmarks/sweep_overhead.py --gpu               # ResNet-32, 1/2/4 trials per GPU (~15 min)

Every variant is a CE grid on synthetic data (MLP1024, the preset's batch and validation split), its
configurations built by the CLI's own request (``SweepRequest`` → ``grid_hparams`` → ``TrialSpec``), and run
twice, one after the other:

  plain   ``robustloss_core.engine.train`` on the same configurations in as many fresh Python processes as
          there are cores, the trials dealt round-robin, one torch thread each; wall = launch of the first
          process to exit of the last (interpreter start and imports included).
  cli     ``python sweeps/run.py --mode grid ... --quiet`` (``--repo``: of that checkout); wall = launch to
          exit. Its ``summary.json`` says where the time went:

    estimate     the time the CLI printed before the sweep (services/estimate.py), against the wall
    before Ray   interpreter start, imports, request validation (launch → ``ray_init`` mark)
    Ray start    ``ray.init`` (embedded Ray with the dashboard)
    set-up       Ray up → Tune's first trial start (Tune's experiment set-up)
    grid phase   Tune's ``fit`` (``fit_start`` → ``fit_end``); its ratio is against the plain floor's
                 wall less the plain processes' interpreter start and imports
    idle slots   ∫ (slots − trials running) dt over the grid phase ÷ slots: seconds a core had no trial
    per trial    outside the function (actor start, Tune's bookkeeping: driver span − trial_seconds),
                 set-up inside (data, noise, model before epoch 1), epochs, checkpoint + report
    teardown     ``fit_end`` → process exit (summary, Ray shutdown)

Peak memory (``ru_maxrss``): the driver's (``driver_peak_rss_mb`` of the summary) and the largest trial
worker's (``worker_peak_rss_mb`` of the rows). Writes ``sweep_overhead.{json,md}``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)   # gpu_throughput's fake-CIFAR writer

LRS_8 = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3]
# name: (learning rates, seeds, examples per class, epochs); classes K = 100 throughout
VARIANTS = {
    "8x2s": (LRS_8, 1, 50, 5),
    "32x2s": (LRS_8, 4, 50, 5),
    "4x30s": ([0.01, 0.03, 0.1, 0.3], 1, 500, 8),
    "smoke": ([0.01, 0.1], 1, 10, 1),
}


def cli_args(variant: str) -> list[str]:
    lrs, seeds, per_class, epochs = VARIANTS[variant]
    return ["--mode", "grid", "--dataset", "synthetic", "--classes", "100", "--dataset-args",
            f"train_per_class={per_class}", "--losses", "ce", "--lrs", ",".join(map(str, lrs)), "--seeds", str(seeds),
            "--epochs", str(epochs)]


def train_configs(variant: str) -> list[dict]:
    """The TrainConfig dicts the CLI's grid runs for ``variant`` (its own request and specs)."""
    from services.request import SweepRequest
    from services.spec import Fixed, TrialSpec
    from services.sweeps import grid_hparams
    from sweeps.run import parse_args

    req: SweepRequest = parse_args(cli_args(variant) + ["--storage-path", tempfile.gettempdir()])
    fixed = Fixed(train=req.base_train("grid"), resources=req.resources())
    lrs, seeds, _, _ = VARIANTS[variant]
    return [TrialSpec.from_hparams(fixed, hp).train_config() for hp in grid_hparams(["ce"], {}, lrs, seeds)]


def plain_worker(path: str) -> None:
    """One plain process: train the configurations in ``path`` one after the other, write their timings."""
    t_start = time.time()
    import torch

    from robustloss_core import engine

    torch.set_num_threads(1)
    with open(path) as f:
        configs = json.load(f)
    runs, t_imported = [], time.time()
    for cfg in configs:
        t0 = time.time()
        res = engine.train(dict(cfg))
        epochs = sum(h["epoch_time"] for h in res["history"])
        runs.append({"wall": time.time() - t0, "epochs": epochs, "test_top1": res["test_top1"], "lr": cfg["lr"],
                     "seed": cfg["seed"]})
    with open(path + ".out", "w") as f:
        json.dump({"started": t_start, "imported": t_imported, "runs": runs,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, f)


def run_plain(configs: list[dict], procs: int, tmp: str) -> dict:
    paths = []
    for i in range(procs):
        path = os.path.join(tmp, f"plain{i}.json")
        with open(path, "w") as f:
            json.dump(configs[i::procs], f)
        paths.append(path)
    t0 = time.time()
    ps = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--plain-worker", p], cwd=REPO) for p in paths]
    if any(p.wait() for p in ps):
        raise RuntimeError("a plain worker failed")
    wall = time.time() - t0
    outs = [json.load(open(p + ".out")) for p in paths]
    startup = max(o["imported"] for o in outs) - t0           # launch → the slowest process ready to train
    runs = [r for o in outs for r in o["runs"]]
    return {"wall": wall, "startup": startup, "train_phase": wall - startup, "runs": runs,
            "epochs_per_trial": sum(r["epochs"] for r in runs) / len(runs),
            "setup_per_trial": sum(r["wall"] - r["epochs"] for r in runs) / len(runs),
            "peak_rss_mb": max(o["peak_rss_mb"] for o in outs)}


def idle_slot_seconds(rows: list[dict], t0: float, t1: float, slots: int) -> float:
    """∫ max(0, slots − running) dt over [t0, t1] ÷ slots, from the trials' driver spans."""
    events = sorted([(r["started_at"], 1) for r in rows] + [(r["ended_at"], -1) for r in rows])
    idle, running, last = 0.0, 0, t0
    for t, step in events:
        t = min(max(t, t0), t1)
        idle += max(0, slots - running) * (t - last)
        running, last = running + step, t
    idle += max(0, slots - running) * (t1 - last)
    return idle / slots


def run_cli(variant: str, repo: str, store: str, slots: int) -> dict:
    name = f"bench-{variant}"
    cmd = [sys.executable, os.path.join(repo, "sweeps", "run.py"), *cli_args(variant), "--quiet",
           "--storage-path", store, "--name", name]
    env = {**os.environ, "PYTHONPATH": repo}
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    t_exit = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"{variant}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    with open(os.path.join(store, name, "summary.json")) as f:
        summary = json.load(f)
    rows, marks = summary["runs"], summary.get("timings") or {}
    said = re.search(r"^estimate: ~([0-9.]+) (s|min)", proc.stdout, re.M)   # what the CLI predicted
    out = {"wall": t_exit - t0, "grid_phase": summary["wall_seconds"], "stdout_tail": proc.stdout[-600:],
           "estimate": (float(said.group(1)) * (60 if said.group(2) == "min" else 1)) if said else None,
           "driver_peak_rss_mb": summary.get("driver_peak_rss_mb"),
           "test_top1": [r["test_top1"] for r in rows]}
    if "fit_start" in marks:   # a checkout with the driver's timeline (services.timeline)
        first = min(r["started_at"] for r in rows)
        trial = [r["trial_seconds"] - r["startup_seconds"] for r in rows]
        out.update(
            before_ray=marks["ray_init"] - t0, ray_start=marks["ray_up"] - marks["ray_init"],
            setup=first - marks["ray_up"], grid_phase=marks["fit_end"] - marks["fit_start"],
            teardown=t_exit - marks["fit_end"],
            idle_slots=idle_slot_seconds(rows, marks["fit_start"], marks["fit_end"], slots),
            outside_per_trial=sum(r["startup_seconds"] for r in rows) / len(rows),
            inside_per_trial=sum(trial) / len(rows),
            setup_per_trial=sum(r["setup_seconds"] or 0 for r in rows) / len(rows),
            report_per_trial=sum(r["report_seconds"] or 0 for r in rows) / len(rows),
            checkpoints_per_trial=sum(r["checkpoints"] or 0 for r in rows) / len(rows),
            worker_peak_rss_mb=max(r["worker_peak_rss_mb"] or 0 for r in rows))
    return out


def run_gpu(ks, epochs: int, n_train: int, tmp: str, device: str) -> dict:
    """ResNet-32 on fake CIFAR-10 (benchmarks/gpu_throughput.py's writer, the real cifar10 loader) through
    the CLI, k = 1, 2, 4 trials per GPU (``--gpus-per-trial 1/k``), 2k trials each so every slot runs two:
    epoch time per trial and trials per hour per GPU. ``device="cpu"``: the same commands without
    ``--use-gpu`` (a dry run of this code; the numbers mean nothing for a GPU)."""
    from gpu_throughput import write_fake_cifar10

    root = write_fake_cifar10(os.path.join(tmp, "cifar"), n_train=n_train, n_test=max(100, n_train // 5))
    gpus = 1
    if device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
    out = {}
    for k in ks:
        name, store = f"gpu-k{k}", os.path.join(tmp, "gpu-store")
        lrs = ",".join(f"{0.01 * (i + 1):g}" for i in range(2 * k * gpus))
        cmd = [sys.executable, os.path.join(REPO, "sweeps", "run.py"), "--mode", "grid", "--dataset", "cifar10",
               "--data-root", root, "--model", "resnet32", "--losses", "ce", "--lrs", lrs, "--epochs", str(epochs),
               "--batch-size", "128", "--quiet", "--storage-path", store, "--name", name,
               *(["--use-gpu", "--gpus-per-trial", f"{1 / k:g}"] if device == "cuda" else
                 ["--max-concurrent-trials", str(k)])]
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        summary = json.load(open(os.path.join(store, name, "summary.json")))
        rows, grid = summary["runs"], summary["wall_seconds"]
        per_epoch = [(r["trial_seconds"] - r["startup_seconds"] - (r["setup_seconds"] or 0)) / r["epochs"] for r in rows]
        out[k] = {"trials": len(rows), "wall": time.time() - t0, "grid_phase": grid, "gpus": gpus,
                  "epoch_seconds": sum(per_epoch) / len(per_epoch), "trials_per_hour_per_gpu": len(rows) / grid * 3600 / gpus}
        print(f"gpu k={k}: {len(rows)} trials in {grid:.1f} s, epoch {out[k]['epoch_seconds']:.2f} s", flush=True)
    return out


def gpu_report(res: dict, meta: dict, epochs: int, n_train: int) -> str:
    md = [f"# sweep on the GPU ({meta['date']}, {meta['device']})", "",
          f"ResNet-32, fake CIFAR-10 ({n_train} training images), batch 128, CE, {epochs} epochs per trial, "
          "2 trials per slot", "",
          "| trials per GPU | --gpus-per-trial | trials | grid phase | epoch time per trial | trials / hour / GPU |",
          "|---:|---:|---:|---:|---:|---:|"]
    for k, r in res.items():
        md.append(f"| {k} | {1 / k:g} | {r['trials']} | {r['grid_phase']:.1f} s | {r['epoch_seconds']:.2f} s | "
                  f"{r['trials_per_hour_per_gpu']:.0f} |")
    return "\n".join(md) + "\n"


def fmt(x, unit="s", digits=1):
    return "–" if x is None else f"{x:.{digits}f}{unit}"


def report(results: dict, meta: dict) -> str:
    md = [f"# sweep overhead ({meta['date']}, {meta['machine']})", "",
          f"load average before/after: {meta['load_before']:.2f} / {meta['load_after']:.2f}; checkout {meta['repo']}", "",
          "| variant | plain floor | CLI end to end | ratio | grid phase | ratio (vs plain − start-up) | "
          "Ray start | before Ray | set-up | idle slot-s | teardown | CLI's estimate |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v, r in results.items():
        p, c = r["plain"], r["cli"]
        md.append(f"| {v} | {fmt(p['wall'])} | {fmt(c['wall'])} | **{c['wall'] / p['wall']:.2f}×** | {fmt(c['grid_phase'])} | "
                  f"**{c['grid_phase'] / p['train_phase']:.2f}×** | {fmt(c.get('ray_start'))} | {fmt(c.get('before_ray'))} | "
                  f"{fmt(c.get('setup'))} | {fmt(c.get('idle_slots'))} | {fmt(c.get('teardown'))} | "
                  f"{fmt(c.get('estimate'), digits=0)} |")
    md += ["", "Per trial (means; plain: set-up = run wall − epochs, in a process already warm from its first run "
           "or not):", "",
           "| variant | plain epochs | plain set-up | CLI in-function | of it set-up | of it checkpoint + report | "
           "checkpoints | outside the function | driver peak RSS | worker peak RSS (plain) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v, r in results.items():
        p, c = r["plain"], r["cli"]
        md.append(f"| {v} | {fmt(p['epochs_per_trial'], digits=2)} | {fmt(p['setup_per_trial'], digits=2)} | "
                  f"{fmt(c.get('inside_per_trial'), digits=2)} | {fmt(c.get('setup_per_trial'), digits=2)} | "
                  f"{fmt(c.get('report_per_trial'), digits=2)} | {fmt(c.get('checkpoints_per_trial'), '', 1)} | "
                  f"{fmt(c.get('outside_per_trial'), digits=2)} | {fmt(c.get('driver_peak_rss_mb'), ' MB', 0)} | "
                  f"{fmt(c.get('worker_peak_rss_mb'), ' MB', 0)} ({fmt(p['peak_rss_mb'], ' MB', 0)}) |")
    return "\n".join(md) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="8x2s,32x2s,4x30s", help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--repo", default=REPO, help="checkout whose sweeps/run.py to time (default: this one)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--smoke", action="store_true", help="the CI variant only")
    ap.add_argument("--gpu", action="store_true", help="the GPU variant: ResNet-32, 1/2/4 trials per GPU")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="--gpu: cpu = a dry run of the variant")
    ap.add_argument("--plain-worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.plain_worker:
        plain_worker(a.plain_worker)
        return 0
    if a.gpu:
        return gpu_main(a)
    variants = ["smoke"] if a.smoke else a.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            print(f"error: --variants {v!r} is not one of {', '.join(VARIANTS)}", file=sys.stderr)
            return 2
    os.makedirs(a.out, exist_ok=True)
    procs = os.cpu_count() or 1
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "repo": os.path.abspath(a.repo),
            "machine": f"{procs} cores, {os.uname().machine}", "load_before": os.getloadavg()[0]}
    results = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        for v in variants:
            configs = train_configs(v)
            plain = run_plain(configs, procs, tmp)
            print(f"{v}: plain {len(configs)} trials in {plain['wall']:.1f} s", flush=True)
            cli = run_cli(v, os.path.abspath(a.repo), os.path.join(tmp, "store"), procs)
            print(f"{v}: cli {cli['wall']:.1f} s (grid phase {cli['grid_phase']:.1f} s) = "
                  f"{cli['wall'] / plain['wall']:.2f}× plain", flush=True)
            results[v] = {"trials": len(configs), "plain": plain, "cli": cli}
    meta["load_after"] = os.getloadavg()[0]
    md = report(results, meta)
    with open(os.path.join(a.out, "sweep_overhead.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    with open(os.path.join(a.out, "sweep_overhead.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


def gpu_main(a) -> int:
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to measure (--device cpu runs a dry run)")
        return 0
    epochs, n_train, ks = (1, 200, (1, 2)) if a.smoke else (3, 50_000, (1, 2, 4))
    name = torch.cuda.get_device_name(0) if a.device == "cuda" else "CPU dry run"
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": name}
    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        res = run_gpu(ks, epochs, n_train, tmp, a.device)
    md = gpu_report(res, meta, epochs, n_train)
    with open(os.path.join(a.out, "sweep_overhead_gpu.json"), "w") as f:
        json.dump({"meta": meta, "results": res}, f, indent=2)
    with open(os.path.join(a.out, "sweep_overhead_gpu.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
