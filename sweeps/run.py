#!/usr/bin/env python
"""robustloss CLI: one run, a baseline sweep, the paper's analytic mode, and their comparison.

    python sweeps/run.py --mode analytic --dataset webvision          # ε and calibrated params for K=1000
    python sweeps/run.py --mode grid --dataset synthetic --classes 100 --losses mae,gce
    python sweeps/run.py --mode compare --grid NAME --analytic NAME
    python sweeps/run.py --config sweeps/configs/demo.yaml            # grid + analytic + compare

Every flag may also come from ``--config FILE.yaml`` (keys are flag names, ``-`` or ``_``);
flags on the command line override the file; a file the config names (``grid_file``) is read relative
to the config file (else to the repository root). Lists are comma strings (or YAML lists), mappings
``k=v,k=v`` (or YAML mappings). Bad input fails in one line before Ray starts.
Numbers marked (reconstructed) in --help are our inference where the paper's value was lost.
"""
from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from services.request import (BIAS_SCHEDULES, CALLBACKS, LR_PROTOCOLS, MODES, PICKS, SEARCHES, SELECTIONS,
                              RequestError, SweepRequest, calibration_references, unknown_names)

CLIError = RequestError   # bad command-line or config-file input: one line, exit status 2
REPO = Path(__file__).resolve().parent.parent
CONFIG_PATHS = ("grid_file",)   # config keys naming a file: relative to the config file


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message, with the nearest flags for a typo
        if message.startswith("unrecognized arguments:"):
            typos = [a.split("=")[0] for a in message.split(":", 1)[1].split() if a.startswith("-")]
            flags = [o for o in self._option_string_actions if o.startswith("--")]
            hints = [f"{t} (did you mean {', '.join(near)}?)" for t in typos
                     if (near := difflib.get_close_matches(t, flags, n=3, cutoff=0.6))]
            if hints:
                message += "; " + "; ".join(hints)
        raise CLIError(message)


class _Help(argparse.RawDescriptionHelpFormatter):
    """Shows a flag's default once, and only where there is one (not None/False, not already in the text)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS, {}, [], "") and "default" not in text \
                and action.option_strings and not isinstance(action, argparse._StoreTrueAction):
            text += " (default: %(default)s)"
        return text


def _presets_line() -> str:
    """Each dataset's preset model, with the measured CPU cost where there is one (for --help)."""
    from robustloss_core.datasets import DATASETS, preset_dataset
    from robustloss_core.models import default_model

    by_model: dict = {}
    for name in sorted(DATASETS):
        by_model.setdefault(default_model(preset_dataset(name)), []).append(name)
    return "; ".join(f"{m} for {', '.join(names)}" for m, names in by_model.items())


def _data_root_help() -> str:
    from robustloss_core.datasets import DATASET_SPECS, default_root

    system = "; ".join(f"{s.name}: also {s.system_root} when that is installed" for s in DATASET_SPECS.values()
                       if s.system_root is not None)
    return (f"folder holding the dataset files (not needed for synthetic; default: $ROBUSTLOSS_DATA_ROOT, else "
            f"{os.path.abspath(default_root('cifar10'))}; {system})")


def build_parser() -> argparse.ArgumentParser:
    from robustloss_core.datasets import DATASETS
    from robustloss_core.losses import LOSSES
    from robustloss_core.noise import NOISE_KINDS
    from robustloss_core.presets import C_DEFAULT

    d0 = SweepRequest()
    p = _Parser(prog="robustloss", description=__doc__.split("\n")[1], formatter_class=_Help,
                epilog=f"datasets: {', '.join(sorted(DATASETS))}\nlosses: {', '.join(sorted(LOSSES))}")
    p.add_argument("--mode", choices=MODES, default=d0.mode, help="train: one Ray Train run; grid: baseline Tune sweep; "
                   "analytic: the paper's training-free parameters, then train; compare: report; all: grid + analytic + compare")
    p.add_argument("--config", help="YAML file with any of these flags (command line overrides), or a paper "
                   "table config from sweeps/configs/paper/ together with --setting")
    p.add_argument("--setting", help="paper config: which setting (e.g. sym-40) to run; "
                   "compare: also print the paper's reported numbers beside ours")
    p.add_argument("--row", help="paper config: run the companion invocation that produces this "
                   "paper row instead of the setting's own (e.g. 'NF-MAE**', 'MAE*'; see the config's row_losses)")
    d = p.add_argument_group("data")
    d.add_argument("--dataset", default=d0.dataset, help="dataset name (list below)")
    d.add_argument("--data-root", help=_data_root_help())
    d.add_argument("--download", action="store_true", help="download CIFAR/Fashion-MNIST into --data-root if absent")
    d.add_argument("--classes", default=d0.classes, help="number of classes K of the synthetic datasets (the "
                   "others have a fixed K: refused there)")
    d.add_argument("--dataset-args", default={}, help="extra dataset options k=v,... (e.g. train_per_class=20,sigma=1)")
    d.add_argument("--noise", choices=NOISE_KINDS, default=d0.noise, help="label noise added to the training labels "
                   "of any dataset (needs --noise-rate > 0)")
    d.add_argument("--noise-rate", default=d0.noise_rate, help="label-noise rate in [0, 1] (needs --noise)")
    d.add_argument("--noise-variant", default=d0.noise_variant,
                   help="symmetric: paper = random label (may stay correct), flip = always another class; "
                   "asymmetric: paper = the dataset's class map, blocks = APL's CIFAR-100 index blocks")
    d.add_argument("--val-fraction", default=d0.val_fraction, help="stratified, seeded hold-out of the "
                   "training set, carved after label noise (noisy labels); selects configurations; 0 = none")
    t = p.add_argument_group("training")
    t.add_argument("--losses", default=",".join(d0.losses), help="comma-separated loss names (one for --mode train; "
                   "list below)")
    t.add_argument("--loss-params", default={}, help="train: loss hyperparameters k=v,... (q, a, alpha, beta, gamma, A, t1, t2)")
    t.add_argument("--logit-bias", default="0", help="train: ε added to the target logit, a number or auto (Eq. 4 for the dataset's K)")
    t.add_argument("--bias-c", default=C_DEFAULT, help="Eq. 4 constant c = E[p_y] after the bias (reconstructed)")
    t.add_argument("--bias-schedule", choices=BIAS_SCHEDULES, default=d0.bias_schedule,
                   help="logit bias over epochs: weaning = the paper's '**' ladder, 6 values from ε down to ε/6, "
                   "11 epochs each, repeating (values reconstructed); dynamic = ε recomputed every epoch so the "
                   "biased mean p_y stays at c (fades as the network learns); constant = ε throughout; auto = "
                   "weaning for analytic mode on webvision, else constant")
    t.add_argument("--calibration-reference", type=int, choices=calibration_references(),
                   help="analytic: K_ref of the setting the '+' losses are calibrated from, for every loss "
                   "(default: each recipe's own reference)")
    t.add_argument("--sigma", default="1", help="σ of the initial logits in Eq. 3/4: a number (the paper: 1) or "
                   "auto = measured on the model that will train")
    t.add_argument("--pick", choices=PICKS, default=d0.pick, help="analytic: which member of a loss's calibrated "
                   "solution set trains: curve = the recipe's deterministic rule; pilot = train the --pilots most "
                   "different ones for --pilot-fraction of the epochs and keep the best on noisy validation (Fig. 6)")
    t.add_argument("--pilots", default=d0.pilots, help="analytic --pick pilot: candidates per loss")
    t.add_argument("--pilot-fraction", default=d0.pilot_fraction,
                   help="analytic --pick pilot: a pilot's share of --epochs")
    t.add_argument("--lr", help="one learning rate fixed in advance (implies --lr-protocol shared; "
                   "default: the dataset/loss preset for --mode train)")
    t.add_argument("--lrs", help="learning rates a,b,... searched by grid and analytic modes (default: the grid "
                   "file's); under --search optuna their range [min, max] is searched continuously (log scale)")
    t.add_argument("--lr-protocol", choices=LR_PROTOCOLS, help="searched: both modes search --lrs (analytic pays "
                   "for it); shared: both train at --lr (default: shared if --lr is given, else searched)")
    t.add_argument("--epochs", help="epochs per trial (default: the dataset preset)")
    t.add_argument("--batch-size", help="global batch size (default: the dataset preset)")
    t.add_argument("--model", help=f"model name (default: the dataset preset: {_presets_line()}). On a CPU the "
                   "presets' ResNets are slow: Fashion-MNIST took ~237 s an epoch with resnet32 and ~10 s with "
                   "mlp1024 on a 2-core machine")
    t.add_argument("--seeds", default=d0.seeds, help="seeds per configuration (0..N-1)")
    t.add_argument("--grid-file", default=d0.grid_file, help="YAML with the default grids per loss and the lrs")
    t.add_argument("--search", choices=SEARCHES, default=d0.search, help="grid: the full grid; optuna: TPE + ASHA on the same budget")
    t.add_argument("--num-samples", help="optuna: trials (default: the grid's size)")
    t.add_argument("--optuna-storage", help="optuna: a database URL for the study (default: <storage>/<name>/optuna.journal)")
    t.add_argument("--calibrate-only", action="store_true", help="analytic: compute and store the parameters, do not train")
    t.add_argument("--selection", choices=SELECTIONS, default=d0.selection, help="compare: pick each mode's best "
                   "configuration by noisy-validation top-1 (val) or by test top-1 (test = the paper's oracle; "
                   "also what lets --val-fraction 0 run a grid, analytic or Optuna sweep, choosing on test labels)")
    r = p.add_argument_group("ray")
    r.add_argument("--num-workers", default=d0.num_workers, help="Ray Train workers per run (DDP when > 1)")
    r.add_argument("--use-gpu", action="store_true", help="train on GPUs")
    r.add_argument("--gpus-per-trial", default=d0.gpus_per_trial, help="GPUs per trial, fractional allowed (e.g. 0.25)")
    r.add_argument("--cpus-per-trial", default=d0.cpus_per_trial, help="CPUs per worker")
    r.add_argument("--max-concurrent-trials", help="default: as many as the cluster's CPUs/GPUs allow")
    r.add_argument("--max-failures", default=d0.max_failures, help="retries of a failed trial from its last checkpoint")
    r.add_argument("--checkpoint-every", default=d0.checkpoint_every, help="also save a trial's state every N "
                   "epochs (0: only by --checkpoint-seconds and after the last epoch; a killed or failed trial "
                   "repeats the epochs since its last checkpoint)")
    r.add_argument("--checkpoint-seconds", default=d0.checkpoint_seconds, help="save a trial's state "
                   "after an epoch that ends this long after its previous checkpoint (0: every epoch)")
    r.add_argument("--address", help="Ray cluster: auto or host:port (default: an embedded local Ray)")
    r.add_argument("--storage-path", help="local/NFS folder, s3://bucket/prefix[?endpoint_override=h:p&scheme=http] "
                   "or gs://bucket/prefix (default: $ROBUSTLOSS_STORAGE, else ~/robustloss_results; a relative path "
                   "is relative to the launch directory, and refused inside `ray job submit --working-dir`)")
    r.add_argument("--storage-shared", action="store_true", help="the local --storage-path is a shared mount on "
                   "every node (a multi-node cluster refuses a node-local path otherwise)")
    r.add_argument("--name", help="experiment name (folder under --storage-path; default: mode-dataset-K-time)")
    r.add_argument("--resume", action="store_true", help="continue the experiment --name as it was asked (its "
                   "robustloss.json): other flags may only change resources or output (--max-concurrent-trials, "
                   "--quiet, ...; under --search optuna also --num-samples); a flag that would change the trials is refused")
    r.add_argument("--grid", dest="grid_name", help="compare: grid experiment name")
    r.add_argument("--analytic", dest="analytic_name", help="compare: analytic experiment name")
    r.add_argument("--json-out", help="write a machine-readable summary here")
    r.add_argument("--callbacks", default="", help=f"experiment trackers beside TensorBoard, comma-separated: "
                   f"{', '.join(CALLBACKS)} (extras robustloss[mlflow], robustloss[wandb]; mlflow adds ~2 s per trial)")
    r.add_argument("--quiet", action="store_true", help="no Tune progress table")
    r.add_argument("--verbose", action="store_true", help="Ray's, Tune's and Train's own INFO logs")
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
    keys = sorted(k for k in dests if k not in ("help", "config", "setting", "row"))
    out = {}
    for key, value in data.items():
        dest = aliases.get(str(key).replace("-", "_"), str(key).replace("-", "_"))
        if dest not in keys:
            raise CLIError(f"--config {path!r}: {unknown_names([key], keys, what='key')}")
        action = dests[dest]
        if action.type is not None and isinstance(value, str):
            value = action.type(value)
        if action.choices is not None and value not in action.choices:
            raise CLIError(f"--config {path!r}: {key} {value!r} is not one of "
                           f"{', '.join(map(str, action.choices))}")
        if dest in CONFIG_PATHS and isinstance(value, str):
            value = config_path(value, path)
        out[dest] = value   # lists, mappings and numbers are typed with the command line's (SweepRequest.from_options)
    return out


def config_path(value: str, config: str) -> str:
    """A file named in a config: relative to the config file's folder; where no such file is there, relative
    to the repository root (the shipped paper configs name ``sweeps/configs/paper/grids/...``)."""
    raw = os.path.expanduser(value)
    if os.path.isabs(raw):
        return raw
    here = os.path.join(os.path.dirname(os.path.abspath(config)), raw)
    if os.path.exists(here) or not (REPO / raw).exists():
        return here
    return str(REPO / raw)


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The options set on the command line (not left at their defaults)."""
    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def parse_args(argv: list[str] | None = None) -> SweepRequest:
    """Parse flags (and ``--config``) into a validated ``SweepRequest``, without starting Ray or changing
    storage. With ``--resume`` the request is the experiment's stored one (``services.resume``): read from
    the storage, compared with the flags given, refused where they would change its trials."""
    from services import resume

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    first = parser.parse_args(argv)
    given = given_options(parser, argv) - {"config", "setting", "row"}
    if first.config:
        config = _load_config(first.config, parser, first.setting, first.row)
        given |= set(config)
        parser.set_defaults(**config)
        args = parser.parse_args(argv)
    else:
        args = first
    options = {k: v for k, v in vars(args).items() if k not in ("help",)}
    request = SweepRequest.from_options(given=given, **options)
    return resume.continued(request) if request.resume else request.validated()


def main(argv: list[str] | None = None) -> int:
    from services import app, quiet, timeline

    timeline.mark("main")
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    quiet.quiet_ray(verbose)   # before Ray is imported by anything: its start-up lines come from the driver's loggers
    try:
        request = parse_args(argv)
        with quiet.quiet_exit(verbose):
            return app.run(request)
    except RequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except app.UserError as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
