"""GPU throughput of the engine's fast path: ResNet-32 on CIFAR-10-shaped data.

    .venv/bin/python benchmarks/gpu_throughput.py                 # needs a CUDA GPU; exits 0 without one
    .venv/bin/python benchmarks/gpu_throughput.py --quick --out /tmp/x
    .venv/bin/python benchmarks/gpu_throughput.py --device cpu --smoke --out /tmp/x   # dry run of the script (CI)

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

Writes ``gpu_throughput.{json,md}`` to ``--out``. ``--device cpu`` runs the same three measurements
on the CPU (wall-clock timers instead of CUDA events; no bf16/channels_last, as in the engine): numbers
that mean nothing for a GPU, but the whole script is exercised; ``--smoke`` shrinks it to seconds.
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


def train_cfg(root: str, epochs: int, device: str) -> dict:
    return dict(dataset="cifar10", data_root=root, model="resnet32", loss="ce", epochs=epochs, batch_size=128,
                lr=0.1, seed=0, device=device)


def measure_epochs(root: str, epochs: int, device: str) -> dict:
    from robustloss_core import engine

    t0 = time.perf_counter()
    res = engine.train(train_cfg(root, epochs, device))
    wall = time.perf_counter() - t0
    hist = res["history"]
    return {"wall": wall, "epoch_times": [h["epoch_time"] for h in hist],
            "samples_per_sec": [h["samples_per_sec"] for h in hist]}


def measure_pipeline(root: str, steps: int, device: str) -> dict:
    """Augment+normalise alone vs the full step, on the engine's own pieces (CUDA events on a GPU)."""
    import contextlib

    import torch
    import torch.nn.functional as F

    from robustloss_core import datasets, models

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    torch.backends.cudnn.benchmark = True
    bundle = datasets.build_dataset("cifar10", root)
    t = bundle.tensors
    x_all, y_all = t.train_x.to(dev), t.train_y.to(dev)
    model = models.build_model("resnet32", num_classes=10, input_shape=bundle.input_shape).to(dev, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator(device=dev).manual_seed(0)
    n, b = x_all.shape[0], 128

    def batch_idx(i):
        return torch.randint(0, n, (b,), device=dev, generator=gen)

    def prep(idx):
        x = datasets.augment_batch(x_all[idx], t.augment, gen)
        x = datasets.normalize_batch(x, t.mean, t.std)
        return x.contiguous(memory_format=fmt)

    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step(idx):
        x = prep(idx)
        with autocast():
            out = model(x)
        loss = F.cross_entropy(out.float(), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn, k, warmup):
        for i in range(warmup):      # cuDNN autotuning, allocator
            fn(batch_idx(i))
        sync()
        idxs = [batch_idx(i) for i in range(k)]
        if not cuda:
            t0 = time.perf_counter()
            for idx in idxs:
                fn(idx)
            return 1000 * (time.perf_counter() - t0) / k
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for idx in idxs:
            fn(idx)
        end.record()
        sync()
        return start.elapsed_time(end) / k   # ms per step

    model.train()
    warmup = 20 if cuda else 2
    pipe_ms = timed(prep, steps, warmup)
    step_ms = timed(step, steps, warmup)
    return {"input_ms_per_step": pipe_ms, "step_ms_per_step": step_ms, "input_share": pipe_ms / step_ms,
            "batch": b, "steps": steps}


def child(argv) -> int:
    """One sharing process: ``--child ROOT EPOCHS RESULT_FILE DEVICE``."""
    root, epochs, out, device = argv[0], int(argv[1]), argv[2], argv[3]
    if device == "cpu":
        import torch

        torch.set_num_threads(1)
    r = measure_epochs(root, epochs, device)
    with open(out, "w") as f:
        json.dump(r, f)
    return 0


def measure_sharing(root: str, ks, epochs: int, tmp: str, device: str, n_train: int) -> dict:
    out = {}
    for k in ks:
        files = [os.path.join(tmp, f"share-{k}-{i}.json") for i in range(k)]
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", root, str(epochs), f, device])
                 for f in files]
        rcs = [p.wait() for p in procs]
        wall = time.perf_counter() - t0
        if any(rcs):
            out[k] = {"error": f"return codes {rcs}"}
            continue
        rs = [json.load(open(f)) for f in files]
        steady = [x for r in rs for x in r["epoch_times"][1:]] or [x for r in rs for x in r["epoch_times"]]
        train_examples = k * epochs * n_train
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
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cpu: run the same measurements on the CPU (a dry run of the script, not a GPU number)")
    ap.add_argument("--smoke", action="store_true", help="seconds: 32 / 32 images, 2 epochs, 2 steps, 2 processes")
    a = ap.parse_args(argv)

    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print("gpu_throughput: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing to measure.")
        return 0
    n_train, n_test = 50_000, 10_000
    if a.quick:
        a.epochs, a.steps, a.shares = 2, 50, "1,2"
    if a.smoke:
        a.epochs, a.steps, a.shares, n_train, n_test = 2, 2, "2", 32, 32
    if a.device == "cpu":
        torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if a.device == "cuda" else "CPU (dry run, not a GPU measurement)"
    ks = [int(k) for k in a.shares.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = write_fake_cifar10(os.path.join(tmp, "data"), n_train, n_test)
        print(f"device: {gpu}; fake CIFAR-10 ({n_train} / {n_test}) at {root}", flush=True)
        single = measure_epochs(root, a.epochs, a.device)
        print(f"single: epochs {', '.join(f'{x:.2f}' for x in single['epoch_times'])} s", flush=True)
        pipe = measure_pipeline(root, a.steps, a.device)
        print(f"pipeline: {pipe['input_ms_per_step']:.2f} ms of {pipe['step_ms_per_step']:.2f} ms per step", flush=True)
        share = measure_sharing(root, ks, a.epochs, tmp, a.device, n_train)
    steady = single["epoch_times"][1:] or single["epoch_times"]
    out = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "gpu": gpu, "torch": torch.__version__,
           "config": {"model": "resnet32", "batch": 128, "epochs": a.epochs, "train": n_train, "test": n_test,
                      "device": a.device},
           "single": single, "epoch_time_median": statistics.median(steady), "pipeline": pipe, "sharing": share}
    with open(os.path.join(a.out, "gpu_throughput.json"), "w") as f:
        json.dump(out, f, indent=2)
    md = [f"# GPU throughput ({out['date']}, {gpu})", "",
          f"ResNet-32, fake CIFAR-10 ({n_train} train / {n_test} test), batch 128, on-device augmentation"
          + (", bf16 autocast, channels_last." if a.device == "cuda" else " (CPU dry run: fp32)."), "",
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
