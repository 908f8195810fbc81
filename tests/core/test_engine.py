"""Engine + TrainConfig: determinism, exact resume, metrics against an independent computation, the
ε schedule, divergence, config round trip and presets, the DataLoader path and a 2-rank DDP run."""
import json
import math
import os

import numpy as np
import pytest
import torch

from robustloss_core import config as C
from robustloss_core import engine, noise, presets
from robustloss_core.config import TrainConfig
from robustloss_core.datasets import build_dataset
from robustloss_core.models import build_model

TINY = {"classes": 5, "train_per_class": 24, "test_per_class": 10, "dim": 16}
BASE = {"dataset": "synthetic", "dataset_args": TINY, "lr": 0.05, "batch_size": 16, "device": "cpu",
        "epochs": 4, "seed": 3}
TIMING = ("epoch_time", "samples_per_sec")


pytestmark = pytest.mark.usefixtures("one_thread")


def strip(history):
    return [{k: v for k, v in m.items() if k not in TIMING} for m in history]


# ------------------------------------------------------------------------------------- engine
def test_same_seed_same_metrics_other_seed_differs():
    a = engine.train(dict(BASE, epochs=2))
    b = engine.train(dict(BASE, epochs=2))
    c = engine.train(dict(BASE, epochs=2, seed=4))
    assert strip(a["history"]) == strip(b["history"])
    assert strip(a["history"]) != strip(c["history"])
    assert set(engine.METRIC_KEYS) <= set(a) and [m["epoch"] for m in a["history"]] == [1, 2]


def test_resume_is_exact(tmp_path):
    cfg = dict(BASE, noise="symmetric", noise_rate=0.4, loss="gce", lr_schedule={"kind": "exp", "gamma": 0.9},
               logit_bias_schedule={"values": [1.5, 0.5], "hold": 1})
    full = engine.train(cfg)
    saved = {}

    def keep(metrics, get_state):
        if metrics["epoch"] == 2:
            engine.save_checkpoint(get_state(), tmp_path / "ck" / "state.pt")
            saved["metrics"] = metrics

    engine.train(dict(cfg, epochs=2), on_epoch=keep)
    state = engine.load_checkpoint(tmp_path / "ck" / "state.pt")
    assert state["epoch"] == 2 and state["config"]["loss"] == "gce" and len(state["history"]) == 2
    assert state["logit_bias_schedule"]["index"] == 0 and state["logit_bias_schedule"]["value"] == 1.5
    assert state["scheduler"]["next_lr"] == pytest.approx(0.05 * 0.9 ** 2)
    assert set(state["rng"]) == {"torch", "numpy", "python", "cuda"} and "momentum_buffer" in str(state["optimizer"])
    resumed = engine.train(cfg, resume_state=state)
    assert strip(resumed["history"]) == strip(full["history"])   # exact equality on CPU
    assert resumed["test_top1"] == full["test_top1"] and resumed["train_loss"] == full["train_loss"]
    with pytest.raises(ValueError, match="different run.*loss"):
        engine.train(dict(cfg, loss="ce"), resume_state=state)


def test_metrics_match_an_independent_computation():
    """With a vanishing LR the weights stay at their initialisation, so the in-pass training metrics must
    equal those of the freshly built model (torch.manual_seed(seed) before build_model) on all data."""
    cfg = dict(BASE, epochs=1, lr=1e-12, noise="symmetric", noise_rate=0.5, noise_variant="flip")
    out = engine.train(cfg)
    bundle = build_dataset("synthetic", seed=3, **TINY)
    nl = noise.apply_label_noise(bundle.train_targets, 5, kind="symmetric", rate=0.5, seed=3, variant="flip")
    torch.manual_seed(3)
    model = build_model("mlp1024", 5, (16,)).eval()
    with torch.no_grad():
        pred = model(bundle.tensors.train_x).argmax(1).numpy()
        test_logits = model(bundle.tensors.test_x)
    ty = bundle.tensors.test_y
    assert out["noise_rate_actual"] == nl.rate > 0.3
    assert out["train_acc_noisy"] == pytest.approx(100 * np.mean(pred == nl.noisy))
    assert out["train_acc_clean"] == pytest.approx(100 * np.mean(pred == nl.clean))
    assert out["memorized"] == pytest.approx(np.mean(pred[nl.is_noisy] == nl.noisy[nl.is_noisy]))
    assert out["test_top1"] == pytest.approx(100 * (test_logits.argmax(1) == ty).float().mean().item())
    top5 = (test_logits.topk(5, 1).indices == ty[:, None]).any(1).float().mean().item()
    assert out["test_top5"] == pytest.approx(100 * top5) == 100.0     # K = 5: top-5 is everything
    ce = torch.nn.functional.cross_entropy(model(bundle.tensors.train_x), torch.as_tensor(nl.noisy)).item()
    assert out["train_loss"] == pytest.approx(ce, rel=1e-5)


def test_logit_bias_only_in_training_and_schedule_positions():
    sched = {"values": [40.0, 30.0, 0.0], "hold": 2}
    out = engine.train(dict(BASE, loss="mae", epochs=7, eval_every=3, logit_bias_schedule=sched,
                            lr_schedule={"kind": "step", "milestones": [2, 5], "gamma": 0.1}))
    h = out["history"]
    assert [m["logit_bias"] for m in h] == [40.0, 40.0, 30.0, 30.0, 0.0, 0.0, 40.0]   # values[(e // 2) % 3]
    assert [m["lr"] for m in h] == pytest.approx([0.05, 0.05, 0.005, 0.005, 0.005, 0.0005, 0.0005])
    assert [m["test_top1"] is None for m in h] == [True, True, False, True, True, False, False]
    # with ε = 40 the MAE loss 2(1 − p_y) is ~0 (so is its gradient); the accuracy comes from raw logits
    assert h[0]["train_loss"] < 1e-6 and h[0]["train_acc_noisy"] < 60.0
    assert C.logit_bias_at(0.7, None, 5) == (0.7, None)
    ladder = presets.WEANING_LADDER
    eps = [C.logit_bias_at(0.0, ladder, e)[0] for e in (0, 10, 11, 65, 66, 132, 197)]
    v = ladder["values"]
    assert eps == [v[0], v[0], v[1], v[5], v[0], v[0], v[5]]   # 66-epoch cycle aligned with the LR drops


def test_non_finite_loss_raises():
    with pytest.raises(engine.NonFiniteLossError, match=r"non-finite training loss .* in epoch \d"):
        engine.train(dict(BASE, lr=1e8, epochs=4))
    assert issubclass(engine.NonFiniteLossError, RuntimeError)


def test_dataloader_path_imagefolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) // (2 if c == "a" else 1)
                Image.fromarray(arr).save(tmp_path / split / c / f"{i}.png")
    cfg = {"dataset": "imagefolder", "data_root": str(tmp_path), "dataset_args": {"image_size": 8},
           "model": "mlp1024", "epochs": 2, "batch_size": 4, "lr": 0.01, "device": "cpu"}
    a, b = engine.train(cfg), engine.train(cfg)
    assert strip(a["history"]) == strip(b["history"])      # seeded sampler + transforms
    assert 0 <= a["test_top1"] <= 100 and a["test_top5"] == 100.0 and len(a["history"]) == 2


def test_in_memory_image_path_resnet32(tmp_path):
    """uint8 CIFAR-10 batches (a 60-image fake copy on disk): on-device gather → augment → normalise → ResNet-32."""
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, 10).tolist()}, f)
    cfg = {"dataset": "cifar10", "data_root": str(tmp_path), "epochs": 2, "batch_size": 16, "device": "cpu",
           "noise": "asymmetric", "noise_rate": 0.5}
    a, b = engine.train(cfg), engine.train(cfg)
    assert strip(a["history"]) == strip(b["history"])           # seeded on-device augmentation
    assert [m["lr"] for m in a["history"]] == pytest.approx([0.1, 0.01])   # milestones 100, 150 of 200 → 1, 2
    assert math.isfinite(a["train_loss"]) and a["test_top5"] >= a["test_top1"]


# ------------------------------------------------------------------------------------- DDP
def _ddp_worker(rank, world, init, out):
    torch.set_num_threads(1)   # two ranks on a small machine: oversubscribed threads make gloo crawl
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        res = engine.train(dict(BASE, epochs=3, lr=0.1, noise="symmetric", noise_rate=0.2))
        with open(f"{out}.{rank}", "w") as f:
            json.dump(res["history"], f)
    finally:
        torch.distributed.destroy_process_group()
    # torch 2.14's DDP over gloo sometimes aborts at interpreter exit, after all work is done ("terminate
    # called without an active exception", 8 of 40 bare two-rank DDP runs here; cf. pytorch#90549): this
    # rank's results are written, so leave without running the C++ destructors (0 of 60 then)
    os._exit(0)


def test_ddp_two_ranks_agree(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, f"file://{tmp_path}/pg", str(tmp_path / "res")), nprocs=2, join=True)
    h0, h1 = (json.loads((tmp_path / f"res.{r}").read_text()) for r in (0, 1))
    assert h0 == h1                                            # identical global metrics, times included
    assert h0[-1]["train_loss"] < h0[0]["train_loss"]
    assert all(m["test_top1"] is not None for m in h0)


# ------------------------------------------------------------------------------------- config
def test_relative_weaning_schedule_follows_each_runs_own_bias():
    """{"kind": "weaning"} expands against the run's ε: linspace(ε, ε/steps, steps); ε = 0 -> none."""
    assert C.weaning_values(6.0, 6) == pytest.approx([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    assert C.weaning_values(2.0, 1) == [2.0] and C.weaning_values(3.0, 3, low=0.0) == pytest.approx([3.0, 1.5, 0.0])
    rel = {"kind": "weaning", "steps": 3, "hold": 2}
    cfg = TrainConfig.from_dict(dict(BASE, loss="mae", logit_bias=4.5, logit_bias_schedule=rel)).resolved()
    assert cfg.logit_bias_schedule["values"] == pytest.approx([4.5, 3.0, 1.5]) and cfg.logit_bias_schedule["hold"] == 2
    assert TrainConfig.from_dict(dict(BASE, logit_bias_schedule=rel)).resolved().logit_bias_schedule is None
    out = engine.train(dict(BASE, loss="mae", epochs=7, logit_bias=4.5, logit_bias_schedule=rel))
    assert [m["logit_bias"] for m in out["history"]] == pytest.approx([4.5, 4.5, 3.0, 3.0, 1.5, 1.5, 4.5])
    for bad, match in (({"kind": "weaning", "steps": 0, "hold": 11}, "steps=0"),
                       ({"kind": "cosine", "steps": 6, "hold": 11}, "relative form"),
                       ({"kind": "weaning", "hold": 11}, "relative form")):
        with pytest.raises(ValueError, match=match):
            TrainConfig.from_dict({"logit_bias_schedule": bad})


def test_config_round_trip_and_bad_keys():
    cfg = TrainConfig.from_dict(dict(BASE, loss_params={"q": 0.5}, loss="gce"))
    d = cfg.to_dict()
    assert TrainConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert set(d) == set(TrainConfig.field_names())
    with pytest.raises(ValueError, match=r"unknown TrainConfig key\(s\) lrr; valid: dataset, "):
        TrainConfig.from_dict({"lrr": 0.1})


@pytest.mark.parametrize("key,value,match", [
    ("epochs", 0, "epochs=0"), ("lr", -1.0, "lr=-1.0"), ("noise_rate", 1.5, "noise_rate=1.5"),
    ("batch_size", 0, "batch_size=0"), ("loss", "xx", "loss='xx'.*allowed"), ("model", "vgg", "model='vgg'"),
    ("device", "tpu", "device='tpu'"), ("lr_schedule", {"kind": "cosine"}, "lr_schedule"),
    ("logit_bias_schedule", {"values": [], "hold": 11}, "values"),
    ("logit_bias_schedule", {"values": [1.0], "hold": 0}, "hold=0"),
])
def test_config_validation(key, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict({key: value, **({"noise": "symmetric"} if key == "noise_rate" else {})})


def test_resolved_fills_presets_and_scales_milestones():
    c10 = TrainConfig(dataset="cifar10", epochs=20).resolved()
    assert (c10.model, c10.lr, c10.weight_decay, c10.batch_size) == ("resnet32", 0.1, 1e-4, 128)
    assert c10.lr_schedule == {"kind": "multistep", "milestones": [10, 15], "gamma": 0.1}
    full = TrainConfig(dataset="cifar100", epochs=200).resolved()
    assert full.model == "resnet34" and full.lr_schedule["milestones"] == [60, 120, 160]
    assert full.lr_schedule["gamma"] == 0.2 and full.weight_decay == 5e-4
    wv = TrainConfig(dataset="webvision", epochs=198).resolved()
    assert (wv.model, wv.batch_size, wv.lr_schedule["milestones"]) == ("wrn101", 256, [66, 132])
    mlp = TrainConfig(dataset="cifar10", model="mlp1024").resolved()
    assert mlp.lr_schedule == {"kind": "exponential", "gamma": 0.95} and mlp.weight_decay == 0.0
    assert TrainConfig().resolved().model == "mlp1024"
    explicit = TrainConfig(dataset="cifar10", epochs=20, lr=0.3,
                           lr_schedule={"kind": "step", "milestones": [100], "gamma": 0.5}).resolved()
    assert explicit.lr == 0.3 and explicit.lr_schedule == {"kind": "multistep", "milestones": [100], "gamma": 0.5}
    assert C.lr_at(0.1, {"kind": "multistep", "milestones": [100, 150], "gamma": 0.1}, 149) == pytest.approx(0.01)
    assert C.lr_at(0.1, {"kind": "exponential", "gamma": 0.95}, 10) == pytest.approx(0.1 * 0.95 ** 10)
    assert math.isclose(C.lr_at(0.1, None, 7), 0.1)
