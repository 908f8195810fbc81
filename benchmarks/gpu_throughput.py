"""GPU throughput of the engine's fast path: ResNet-32 on CIFAR-10-shaped data.

    .venv/bin/python benchmarks/gpu_throughput.py                 # needs a CUDA GPU; exits 0 without one
    .venv/bin/python benchmarks/gpu_throughput.py --quick --out /tmp/x

No dataset download: a fake CIFAR-10 (random uint8 images, random labels, 50 000 / 10 000) is
written in torchvision's pickle format to a temporary folder and read through the normal
``cifar10`` loader, so the engine takes exactly its real in-memory GPU path: data resident on the
GPU, on-device augmentation (flip + crop) and normalisation, channels_last, bf16 autocast, cuDNN
autotuning. Three measurements:

1. ``epoch``: ``engine.train`` of ResNet-32, batch 128, CE, ``--epochs`` epochs; the engine's
   ``epoch_time`` (train + eval) and ``samples_per_sec`` per epoch (epoch 1 includes cuDNN autotuning
   and is reported separately).
2. ``sharing``: k = 1, 2, 4 concurrent processes on the one GPU (what fractional ``--gpus-per-trial
   1/k`` gives Tune trials), each running the same training; total throughput = Σ training examples /
   wall time of the slowest, and per-process epoch time.
3. ``input pipeline``: per step, augment + normalise of a 128-batch alone vs the full training step
   (gather, augment, normalise, forward, loss, backward, SGD step), timed with CUDA events over
   ``--steps`` steps after warm-up; the share of the step spent in the input pipeline.

Writes ``gpu_throughput.{json,md}`` to ``--out``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)


def write_fake_cifar10(root: str, n_train: int = 50_000, n_test: int = 10_000, seed: int = 0) -> str:
    """Random CIFAR-10 in torchvision's layout under ``root/cifar-10-batches-py``; returns root."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    per = n_train // 5
    for i in range(1, 6):
        with open(os.path.join(folder, f"data_batch_{i}"), "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (per, 3072), dtype=np.uint8),
                         b"labels": rng.integers(0, 10, per).tolist()}, f)
    with open(os.path.join(folder, "test_batch"), "wb") as f:
        pickle.dump({b"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8),
                     b"labels": rng.integers(0, 10, n_test).tolist()}, f)
    return root


def train_cfg(root: str, epochs: int) -> dict:
    return dict(dataset="cifar10", data_root=root, model="resnet32", loss="ce", epochs=epochs, batch_size=128,
                lr=0.1, seed=0, device="cuda")


def measure_epochs(root: str, epochs: int) -> dict:
    from robustloss_core import engine

    t0 = time.perf_counter()
    res = engine.train(train_cfg(root, epochs))
    wall = time.perf_counter() - t0
    hist = res["history"]
    return {"wall": wall, "epoch_times": [h["epoch_time"] for h in hist],
            "samples_per_sec": [h["samples_per_sec"] for h in hist]}


def measure_pipeline(root: str, steps: int) -> dict:
    """CUDA-event timing of augment+normalise alone vs the full step, on the engine's own pieces."""
    import torch
    import torch.nn.functional as F

    from robustloss_core import datasets, models

    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    bundle = datasets.build_dataset("cifar10", root)
    t = bundle.tensors
    x_all, y_all = t.train_x.to(dev), t.train_y.to(dev)
    model = models.build_model("resnet32", num_classes=10, input_shape=bundle.input_shape).to(
        dev, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator(device=dev).manual_seed(0)
    n, b = x_all.shape[0], 128

    def batch_idx(i):
        return torch.randint(0, n, (b,), device=dev, generator=gen)

    def prep(idx):
        x = datasets.augment_batch(x_all[idx], t.augment, gen)
        x = datasets.normalize_batch(x, t.mean, t.std)
        return x.contiguous(memory_format=torch.channels_last)

    def step(idx):
        x = prep(idx)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
        loss = F.cross_entropy(out.float(), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn, k):
        for i in range(20):          # warm-up (cuDNN autotuning, allocator)
            fn(batch_idx(i))
        torch.cuda.synchronize()
        idxs = [batch_idx(i) for i in range(k)]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for idx in idxs:
            fn(idx)
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / k   # ms per step

    model.train()
    pipe_ms = timed(prep, steps)
    step_ms = timed(step, steps)
    return {"input_ms_per_step": pipe_ms, "step_ms_per_step": step_ms, "input_share": pipe_ms / step_ms,
            "batch": b, "steps": steps}


def child(argv) -> int:
    """One sharing process: ``--child ROOT EPOCHS RESULT_FILE``."""
    root, epochs, out = argv[0], int(argv[1]), argv[2]
    r = measure_epochs(root, epochs)
    with open(out, "w") as f:
        json.dump(r, f)
    return 0


def measure_sharing(root: str, ks, epochs: int, tmp: str) -> dict:
    out = {}
    for k in ks:
        files = [os.path.join(tmp, f"share-{k}-{i}.json") for i in range(k)]
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", root, str(epochs), f])
                 for f in files]
        rcs = [p.wait() for p in procs]
        wall = time.perf_counter() - t0
        if any(rcs):
            out[k] = {"error": f"return codes {rcs}"}
            continue
        rs = [json.load(open(f)) for f in files]
        steady = [x for r in rs for x in r["epoch_times"][1:]] or [x for r in rs for x in r["epoch_times"]]
        train_examples = k * epochs * 50_000
        out[k] = {"wall": wall, "epoch_time_median": statistics.median(steady),
                  "total_samples_per_sec_wall": train_examples / wall,
                  "total_samples_per_sec_steady": sum(statistics.median(r["samples_per_sec"][1:] or r["samples_per_sec"])
                                                      for r in rs)}
        print(f"k={k}: wall {wall:.1f}s, median epoch {out[k]['epoch_time_median']:.2f}s, total "
              f"{out[k]['total_samples_per_sec_steady']:.0f} samples/s (steady)", flush=True)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--shares", default="1,2,4", help="concurrent processes per GPU to try")
    ap.add_argument("--quick", action="store_true", help="2 epochs, 50 steps, shares 1,2")
    a = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_throughput: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing to measure.")
        return 0
    if a.quick:
        a.epochs, a.steps, a.shares = 2, 50, "1,2"
    os.makedirs(a.out, exist_ok=True)
    gpu = torch.cuda.get_device_name(0)
    ks = [int(k) for k in a.shares.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = write_fake_cifar10(os.path.join(tmp, "data"))
        print(f"GPU: {gpu}; fake CIFAR-10 at {root}", flush=True)
        single = measure_epochs(root, a.epochs)
        print(f"single: epochs {', '.join(f'{x:.2f}' for x in single['epoch_times'])} s", flush=True)
        pipe = measure_pipeline(root, a.steps)
        print(f"pipeline: {pipe['input_ms_per_step']:.2f} ms of {pipe['step_ms_per_step']:.2f} ms per step", flush=True)
        share = measure_sharing(root, ks, a.epochs, tmp)
    steady = single["epoch_times"][1:] or single["epoch_times"]
    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "gpu": gpu, "torch": torch.__version__,
           "config": {"model": "resnet32", "batch": 128, "epochs": a.epochs, "train": 50_000, "test": 10_000},
           "single": single, "epoch_time_median": statistics.median(steady), "pipeline": pipe, "sharing": share}
    with open(os.path.join(a.out, "gpu_throughput.json"), "w") as f:
        json.dump(out, f, indent=2)
    md = [f"# GPU throughput ({out['date']}, {gpu})", "",
          f"ResNet-32, fake CIFAR-10 (50 000 train / 10 000 test), batch 128, bf16 autocast, channels_last, "
          f"on-device augmentation.", "",
          f"- epoch time (train + eval, median of epochs ≥ 2): {out['epoch_time_median']:.2f} s; first epoch "
          f"{single['epoch_times'][0]:.2f} s",
          f"- input pipeline (augment + normalise) {pipe['input_ms_per_step']:.2f} ms of a {pipe['step_ms_per_step']:.2f} ms "
          f"step = {100 * pipe['input_share']:.1f} %", "",
          "| processes per GPU | median epoch time per process | total samples/s (steady) | total samples/s (wall) |",
          "|---:|---:|---:|---:|"]
    for k, s in share.items():
        if "error" in s:
            md.append(f"| {k} | {s['error']} | | |")
        else:
            md.append(f"| {k} | {s['epoch_time_median']:.2f} s | {s['total_samples_per_sec_steady']:.0f} | "
                      f"{s['total_samples_per_sec_wall']:.0f} |")
    with open(os.path.join(a.out, "gpu_throughput.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
