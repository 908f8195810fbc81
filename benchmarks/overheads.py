"""Per-epoch cost of the plain engine vs the same run under Ray Train (1 worker; 2 workers = DDP).

    .venv/bin/python benchmarks/overheads.py                  # ~3-5 min on 2 cores
    .venv/bin/python benchmarks/overheads.py --quick --out /tmp/x

One configuration (synthetic K = 100, 100 train / 20 test examples per class, MLP1024, batch 128,
CE, 5 epochs), run side by side in one process, interleaved ``--repeats`` times so load drift hits
all variants alike:

  engine-1t   robustloss_core.engine.train in this process, torch.set_num_threads(1)
  engine-2t   the same with 2 intra-op threads
  ray-1w      a Ray Train TorchTrainer (services.trainer, the same worker loop the CLI uses, with a
              checkpoint per epoch), 1 worker x 1 CPU
  ray-2w      the same with 2 workers (DDP over gloo, global batch 128 = 64 per rank), 1 CPU each

Per-epoch time is the engine's own ``epoch_time`` (train + eval, max over ranks), taken from the run's
history (epoch 1 is reported separately: it includes lazy initialisation). The start-up cost of a Ray
run = wall time of ``TorchTrainer.fit()`` minus the sum of its epoch times (controller, worker group,
process group, per-epoch checkpoint/report, teardown). Writes ``overheads.{json,md}`` to ``--out``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)


def train_config(quick: bool) -> dict:
    ntr, nte, epochs = (10, 5, 2) if quick else (100, 20, 5)
    return dict(dataset="synthetic", dataset_args={"classes": 100, "train_per_class": ntr, "test_per_class": nte},
                loss="ce", lr=0.03, epochs=epochs, seed=0, device="cpu")


def trial_spec(cfg: dict, workers: int):
    """The ``TrialSpec`` of ``cfg`` (its hyperparameters apart from the fixed TrainConfig fields) on ``workers``
    workers of 1 CPU, checkpointing every epoch."""
    from services.spec import HP_KEYS, Fixed, Resources, TrialSpec

    resources = Resources(num_workers=workers, use_gpu=False, gpus_per_worker=0.0, cpus_per_worker=1, max_failures=0,
                          checkpoint_every=1)
    fixed = Fixed(train={k: v for k, v in cfg.items() if k not in HP_KEYS}, resources=resources)
    return TrialSpec.from_hparams(fixed, {k: v for k, v in cfg.items() if k in HP_KEYS})


def ray_loop(config: dict) -> None:
    """services.trainer's worker loop on ``config["spec"]`` (a TrialSpec's dict), plus rank 0 writing the
    engine history to ``config["history_file"]``."""
    import ray.train

    from services import trainer
    from services.spec import TrialSpec

    rank0 = ray.train.get_context().get_world_rank() == 0
    res = trainer._run_engine(TrialSpec.from_dict(config["spec"]), report=ray.train.report,
                              make_checkpoint=ray.train.Checkpoint.from_directory,
                              checkpoint=ray.train.get_checkpoint(), is_rank0=rank0, device="cpu")
    if rank0:
        with open(config["history_file"], "w") as f:
            json.dump(res["history"], f)


def run_plain(cfg: dict, threads: int) -> dict:
    import torch

    from robustloss_core import engine

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    res = engine.train(dict(cfg))
    wall = time.perf_counter() - t0
    torch.set_num_threads(1)
    return {"wall": wall, "epoch_times": [h["epoch_time"] for h in res["history"]], "top1": res["test_top1"]}


def run_ray(cfg: dict, workers: int, store: str, tag: str) -> dict:
    import ray.train
    from ray.train.torch import TorchTrainer

    hist_file = os.path.join(store, f"{tag}-history.json")
    config = {"spec": trial_spec(cfg, workers).to_dict(), "history_file": hist_file}
    trainer = TorchTrainer(
        ray_loop, train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(name=tag, storage_path=store,
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)))
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    if result.error:
        raise RuntimeError(f"{tag}: {result.error}")
    with open(hist_file) as f:
        hist = json.load(f)
    return {"wall": wall, "epoch_times": [h["epoch_time"] for h in hist], "top1": hist[-1]["test_top1"]}


def summarise(runs: dict) -> dict:
    """Per variant: median epoch time (epochs >= 2), first epoch, wall, start-up; ratio vs engine-1t."""
    summary = {}
    for v, rs in runs.items():
        steady = [x for r in rs for x in r["epoch_times"][1:]] or [x for r in rs for x in r["epoch_times"]]
        first = [r["epoch_times"][0] for r in rs]
        startup = [r["wall"] - sum(r["epoch_times"]) for r in rs]
        summary[v] = {"epoch_median": statistics.median(steady), "epoch_min": min(steady),
                      "first_epoch_median": statistics.median(first), "wall_median": statistics.median(r["wall"] for r in rs),
                      "startup_median": statistics.median(startup), "top1": [r["top1"] for r in rs]}
    base = summary["engine-1t"]["epoch_median"]
    for v in summary:
        summary[v]["ratio_vs_engine_1t"] = summary[v]["epoch_median"] / base
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)

    import torch

    torch.set_num_threads(1)
    import ray

    cfg = train_config(a.quick)
    variants = ["engine-1t", "engine-2t", "ray-1w", "ray-2w"]
    runs = {v: [] for v in variants}
    load = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as store:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            for rep in range(a.repeats):
                for v in variants:
                    t = time.strftime("%H:%M:%S")
                    if v.startswith("engine"):
                        r = run_plain(cfg, int(v[-2]))
                    else:
                        r = run_ray(cfg, int(v[-2]), store, f"{v}-{rep}")
                    r["loadavg"] = os.getloadavg()[0]
                    runs[v].append(r)
                    print(f"[{t}] rep {rep} {v}: wall {r['wall']:.1f}s, epochs "
                          f"{', '.join(f'{x:.2f}' for x in r['epoch_times'])}, top1 {r['top1']}, "
                          f"load {r['loadavg']:.1f}", flush=True)
                    load.append(os.getloadavg())
        finally:
            ray.shutdown()

    summary = summarise(runs)
    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "config": cfg, "repeats": a.repeats,
           "loadavg": load, "runs": runs, "summary": summary}
    with open(os.path.join(a.out, "overheads.json"), "w") as f:
        json.dump(out, f, indent=2)
    n = cfg["dataset_args"]["classes"] * cfg["dataset_args"]["train_per_class"]
    md = [f"# overheads ({out['date']})", "",
          f"synthetic K=100, {n} train examples, MLP1024, batch 128, CE, {cfg['epochs']} epochs, {a.repeats} interleaved "
          f"repeats; load average during the run {min(x[0] for x in load):.1f}–{max(x[0] for x in load):.1f}.", "",
          "| variant | epoch time (median, epochs ≥ 2) | ratio vs engine 1 thread | first epoch | wall of the run | "
          "start-up + teardown (wall − Σ epochs) |", "|---|---:|---:|---:|---:|---:|"]
    for v in variants:
        s = summary[v]
        md.append(f"| {v} | {s['epoch_median']:.2f} s | {s['ratio_vs_engine_1t']:.2f} | {s['first_epoch_median']:.2f} s | "
                  f"{s['wall_median']:.1f} s | {s['startup_median']:.1f} s |")
    with open(os.path.join(a.out, "overheads.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
