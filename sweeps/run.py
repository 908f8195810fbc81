#!/usr/bin/env python
"""robustloss CLI: one run, a baseline sweep, the paper's analytic mode, and their comparison.

    python sweeps/run.py --mode analytic --dataset webvision          # ε and calibrated params for K=1000
    python sweeps/run.py --mode grid --dataset synthetic --classes 100 --losses mae,gce
    python sweeps/run.py --mode compare --grid NAME --analytic NAME
    python sweeps/run.py --config sweeps/configs/demo.yaml            # grid + analytic + compare

Every flag may also come from ``--config FILE.yaml`` (keys are flag names, ``-`` or ``_``);
flags on the command line override the file. Bad input fails in one line before Ray starts.
Numbers marked (reconstructed) in --help are our inference where the paper's value was lost.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MODES = ("train", "grid", "analytic", "compare", "all")


class CLIError(ValueError):
    """Bad command-line or config-file input; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise CLIError(message)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise CLIError(f"expected comma-separated numbers, got {text!r}") from None


def _number(text: str):
    """'3' -> 3, '0.5' -> 0.5, anything else stays a string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _kv(text: str) -> dict:
    out = {}
    for item in filter(None, (s.strip() for s in str(text).split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise CLIError(f"--loss-params item {item!r} is not key=value")
        out[key.strip()] = _number(value.strip())
    return out


def build_parser() -> argparse.ArgumentParser:
    from robustloss_core.presets import C_DEFAULT

    p = _Parser(prog="sweeps/run.py", description=__doc__.split("\n")[1], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--mode", choices=MODES, default="all", help="train: one Ray Train run; grid: baseline Tune sweep; analytic: "
                   "paper's training-free parameters then train; compare: report; all: grid + analytic + compare")
    p.add_argument("--config", help="YAML file with any of these flags (command line overrides), or a paper "
                   "table config from sweeps/configs/paper/ together with --setting")
    p.add_argument("--setting", default=None, help="paper config: which setting (e.g. sym-40) to run; "
                   "compare: also print the paper's reported numbers beside ours")
    p.add_argument("--row", default=None, help="paper config: run the companion invocation that produces this "
                   "paper row instead of the setting's own (e.g. 'NF-MAE**', 'MAE*'; see the config's row_losses)")
    d = p.add_argument_group("data")
    d.add_argument("--dataset", default="synthetic")
    d.add_argument("--data-root", default=None, help="folder holding the dataset files")
    d.add_argument("--download", action="store_true", help="download CIFAR/Fashion-MNIST into --data-root if absent")
    d.add_argument("--classes", type=int, default=10, help="number of classes of the synthetic dataset")
    d.add_argument("--dataset-args", type=_kv, default={}, help="extra dataset options k=v,... (e.g. train_per_class=20)")
    d.add_argument("--noise", choices=("none", "symmetric", "asymmetric"), default="none")
    d.add_argument("--noise-rate", type=float, default=0.0)
    d.add_argument("--noise-variant", choices=("paper", "flip"), default="paper",
                   help="symmetric noise: paper = random label (may stay correct); flip = always a different class")
    t = p.add_argument_group("training")
    t.add_argument("--losses", default="ce,mae,gce", help="comma-separated loss names (one for --mode train)")
    t.add_argument("--loss-params", type=_kv, default={}, help="train: loss hyperparameters k=v,... (q, a, alpha, beta, gamma, A, t1, t2)")
    t.add_argument("--logit-bias", default="0", help="train: ε added to the target logit, a number or auto (Eq. 4 for the dataset's K)")
    t.add_argument("--bias-c", type=float, default=C_DEFAULT, help="Eq. 4 constant c: E[p_y] after the bias (reconstructed default)")
    t.add_argument("--bias-schedule", choices=("auto", "constant", "weaning"), default="auto",
                   help="logit bias over epochs: weaning = the paper's '**' ladder, 6 values from ε down to ε/6, "
                   "11 epochs each, repeating (values reconstructed), for every run with ε > 0; constant = ε "
                   "throughout; auto = weaning for analytic mode on webvision, else constant")
    t.add_argument("--calibration-reference", type=int, choices=(10, 100), default=100,
                   help="analytic: K_ref of the setting the '+' losses are calibrated from: 100 = CIFAR-100 "
                   "parameters (reconstructed default), 10 = CIFAR-10 parameters")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: the dataset/loss preset)")
    t.add_argument("--lrs", type=_floats, default=None, help="grid: learning rates a,b,... (replaces the YAML grid)")
    t.add_argument("--epochs", type=int, default=None, help="epochs (default: the dataset preset)")
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--model", default=None, help="model name (default: the dataset preset)")
    t.add_argument("--seeds", type=int, default=1, help="seeds per configuration (0..N-1)")
    t.add_argument("--grid-file", default=str(CONFIG_DIR / "grid.yaml"), help="YAML with the default grids per loss")
    t.add_argument("--search", choices=("grid", "optuna"), default="grid", help="grid: full grid; optuna: TPE + ASHA on the same budget")
    t.add_argument("--num-samples", type=int, default=None, help="optuna: trials (default: the grid's size)")
    t.add_argument("--calibrate-only", action="store_true", help="analytic: compute and store the parameters, do not train")
    r = p.add_argument_group("ray")
    r.add_argument("--num-workers", type=int, default=1, help="Ray Train workers per run (DDP when > 1)")
    r.add_argument("--use-gpu", action="store_true")
    r.add_argument("--gpus-per-trial", type=float, default=1.0, help="GPUs per trial, fractional allowed (e.g. 0.25)")
    r.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per worker")
    r.add_argument("--max-concurrent-trials", type=int, default=None, help="default: as many as the cluster's CPUs/GPUs allow")
    r.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial from its last checkpoint")
    r.add_argument("--address", default=None, help="Ray cluster: auto or host:port (default: embedded local Ray)")
    r.add_argument("--storage-path", default="results", help="local/NFS folder, s3://bucket/prefix[?endpoint_override=h:p&scheme=http] or gs://")
    r.add_argument("--name", default=None, help="experiment name (folder under --storage-path)")
    r.add_argument("--resume", action="store_true", help="continue the experiment --name")
    r.add_argument("--grid", dest="grid_name", default=None, help="compare: grid experiment name")
    r.add_argument("--analytic", dest="analytic_name", default=None, help="compare: analytic experiment name")
    r.add_argument("--json-out", default=None, help="write a machine-readable summary here")
    r.add_argument("--quiet", action="store_true", help="no Tune progress table")
    return p


def _load_config(path: str, parser: argparse.ArgumentParser, setting: str | None = None, row: str | None = None) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise CLIError(f"--config {path!r}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise CLIError(f"--config {path!r}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise CLIError(f"--config {path!r}: expected a mapping of flag: value, got {type(data).__name__}")
    if "base" in data and "settings" in data:  # a paper table: its base flags + one setting's overrides
        from services import paper

        try:
            cfg = paper.load_paper_config(path)
            if setting is None:
                raise CLIError(f"--config {path!r} is a paper table: add --setting, one of {', '.join(cfg.settings)}")
            data = paper.row_flags(cfg, setting, row) if row else paper.setting_flags(cfg, setting)
        except paper.PaperConfigError as exc:
            raise CLIError(str(exc).splitlines()[0]) from None
        except ValueError as exc:
            raise CLIError(str(exc).splitlines()[0]) from None
    dests = {a.dest: a for a in parser._actions}
    aliases = {"grid": "grid_name", "analytic": "analytic_name"}
    out = {}
    for key, value in data.items():
        dest = aliases.get(str(key).replace("-", "_"), str(key).replace("-", "_"))
        if dest not in dests or dest in ("help", "config", "setting", "row"):
            raise CLIError(f"--config {path!r}: unknown key {key!r}")
        action = dests[dest]
        if isinstance(value, list) and dest in ("losses", "lrs"):
            value = ",".join(str(v) for v in value)
        if isinstance(value, dict) and dest in ("loss_params", "dataset_args"):
            out[dest] = value
            continue
        if action.type is not None and isinstance(value, str):
            value = action.type(value)
        elif action.type is not None and dest == "lrs":
            value = action.type(str(value))
        if action.choices is not None and value not in action.choices:
            raise CLIError(f"--config {path!r}: {key} {value!r} is not one of "
                           f"{', '.join(map(str, action.choices))}")
        out[dest] = value
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate flags (and ``--config``) without starting Ray or touching storage."""
    from robustloss_core.datasets import DATASETS, dataset_num_classes
    from robustloss_core.losses import LOSSES, build_loss

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    first = parser.parse_args(argv)
    if first.config:
        parser.set_defaults(**_load_config(first.config, parser, first.setting, first.row))
        args = parser.parse_args(argv)
    else:
        args = first

    if args.dataset not in DATASETS:
        raise CLIError(f"unknown dataset {args.dataset!r}; choose from {', '.join(sorted(DATASETS))}")
    args.losses = [s.strip() for s in str(args.losses).split(",") if s.strip()]
    for loss in args.losses:
        if loss not in LOSSES:
            raise CLIError(f"unknown loss {loss!r}; choose from {', '.join(sorted(LOSSES))}")
    if args.mode == "train" and len(args.losses) != 1:
        raise CLIError(f"--mode train takes exactly one loss, got {','.join(args.losses)!r}")
    if not 0.0 <= args.noise_rate <= 1.0:
        raise CLIError(f"--noise-rate {args.noise_rate} is outside [0, 1]")
    if args.noise == "none" and args.noise_rate > 0:
        raise CLIError(f"--noise-rate {args.noise_rate} needs --noise symmetric or asymmetric")
    for flag, value, low in (("--seeds", args.seeds, 1), ("--num-workers", args.num_workers, 1), ("--epochs", args.epochs, 1),
                             ("--batch-size", args.batch_size, 1), ("--num-samples", args.num_samples, 1), ("--classes", args.classes, 2)):
        if value is not None and value < low:
            raise CLIError(f"{flag} {value} must be >= {low}")
    for flag, value in (("--lr", args.lr), ("--gpus-per-trial", args.gpus_per_trial), ("--cpus-per-trial", args.cpus_per_trial)):
        if value is not None and value <= 0:
            raise CLIError(f"{flag} {value} must be > 0")
    if args.lrs is not None and (not args.lrs or min(args.lrs) <= 0):
        raise CLIError(f"--lrs {args.lrs} must be positive numbers")
    if str(args.logit_bias) != "auto":
        try:
            args.logit_bias = float(args.logit_bias)
        except ValueError:
            raise CLIError(f"--logit-bias {args.logit_bias!r} must be a number or auto") from None
    if not 0.0 < args.bias_c < 1.0:
        raise CLIError(f"--bias-c {args.bias_c} must be in (0, 1)")
    if args.mode == "compare" and not (args.grid_name and args.analytic_name):
        raise CLIError("--mode compare needs --grid NAME and --analytic NAME")
    if args.resume and not args.name:
        raise CLIError("--resume needs --name of the experiment to continue")
    if args.use_gpu and args.gpus_per_trial < args.num_workers and args.gpus_per_trial > 1:
        raise CLIError(f"--gpus-per-trial {args.gpus_per_trial} must be < 1 (shared) or a multiple of --num-workers")
    if args.dataset == "imagefolder" and not args.data_root:
        raise CLIError("--dataset imagefolder needs --data-root")
    args.dataset_kwargs = {**({"classes": args.classes} if args.dataset == "synthetic" else {}), **args.dataset_args}
    try:
        args.num_classes = dataset_num_classes(args.dataset, root=args.data_root, **args.dataset_kwargs)
    except (ValueError, OSError) as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    if args.mode == "train":
        try:
            build_loss(args.losses[0], args.num_classes, dataset=args.dataset, **args.loss_params)
        except (ValueError, TypeError) as exc:
            raise CLIError(str(exc).splitlines()[0]) from None
    if args.mode in ("grid", "all"):
        args.grids, grid_lrs = load_grids(args.grid_file, args.losses)
        args.lrs = args.lrs or grid_lrs
    return args


def load_grids(path: str, losses: list[str]) -> tuple[dict, list[float]]:
    """Per-loss parameter grids and the learning-rate grid from the grid YAML."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise CLIError(f"--grid-file {path!r}: file not found") from None
    except yaml.YAMLError as exc:
        raise CLIError(f"--grid-file {path!r}: malformed YAML: {str(exc).splitlines()[0]}") from None
    grids = data.get("losses") or {}
    missing = [loss for loss in losses if loss not in grids]
    if missing:
        raise CLIError(f"--grid-file {path!r} has no grid for {', '.join(missing)}")
    lrs = [float(x) for x in data.get("lrs") or []]
    if not lrs:
        raise CLIError(f"--grid-file {path!r}: needs a non-empty 'lrs' list")
    return {loss: {k: list(v) if isinstance(v, list) else [v] for k, v in (grids[loss] or {}).items()} for loss in losses}, lrs


def main(argv: list[str] | None = None) -> int:
    from services import app

    try:
        args = parse_args(argv)
        return app.run(args)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except app.UserError as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
