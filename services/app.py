"""What each CLI mode does, given validated arguments (``sweeps/run.py`` parses them).

Order for every mode: resolve storage and check it is writable, check ``--address``, refuse an
existing experiment name unless ``--resume`` (nothing stored is overwritten), check the dataset's
files — all before Ray starts — then connect to Ray and run.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from robustloss_core.datasets import DataRootError
from services import compare as cmp
from services import storage as st
from services import sweeps
from services.cluster import ClusterError, check_address, connect



class ConfigError(ValueError):
    """A configuration the core library rejects (e.g. a bad dataset option)."""


UserError = (st.StorageError, ClusterError, sweeps.ExperimentExistsError, cmp.CompareError, DataRootError, ConfigError)


# ----------------------------------------------------------------------------- helpers
def default_name(args, mode: str) -> str:
    return f"{mode}-{args.dataset}-k{args.num_classes}-{time.strftime('%Y%m%d-%H%M%S')}"


def claim_name(storage: st.Storage, name: str, resume: bool) -> bool:
    """True if ``name`` must be resumed. Refuses an existing name without ``--resume``."""
    exists = storage.exists(name)
    if exists and not resume:
        raise sweeps.ExperimentExistsError(
            f"experiment {name!r} already exists at {storage.display(name)}; pass --resume to continue it or choose another --name")
    if resume and not exists:  # lets one command serve both the first run and its retries (RayJob)
        print(f"--resume: no experiment {name!r} at {storage.display(name)} yet, starting it")
    return exists


def resources_from(args) -> sweeps.Resources:
    return sweeps.Resources(
        num_workers=args.num_workers, use_gpu=args.use_gpu,
        gpus_per_worker=args.gpus_per_trial / args.num_workers, cpus_per_worker=args.cpus_per_trial,
        max_failures=args.max_failures, max_concurrent_trials=args.max_concurrent_trials,
    )


def bias_schedule(args) -> dict | None:
    """``--bias-schedule``: weaning = the relative ladder ``config.WEANING`` for every trial with ε > 0
    (the paper's "**" runs); constant = none; auto = weaning for analytic mode on webvision (Table 3's
    MAE**), constant otherwise."""
    from robustloss_core.config import WEANING

    kind = getattr(args, "bias_schedule", "auto")
    if kind == "auto":
        kind = "weaning" if args.mode == "analytic" and args.dataset == "webvision" else "constant"
    return dict(WEANING) if kind == "weaning" else None


def base_train(args) -> dict:
    """The TrainConfig fields every trial of this invocation shares, presets filled in."""
    from robustloss_core.config import TrainConfig

    cfg = TrainConfig.from_dict({
        "dataset": args.dataset, "data_root": args.data_root, "download": args.download,
        "dataset_args": dict(args.dataset_kwargs), "noise": args.noise, "noise_rate": args.noise_rate,
        "noise_variant": args.noise_variant, "model": args.model, "batch_size": args.batch_size,
        **({"epochs": args.epochs} if args.epochs else {}),
    }).resolved()
    # the relative schedule is expanded per trial, against each trial's own ε (TrainConfig.resolved)
    return {**cfg.to_dict(), "logit_bias_schedule": bias_schedule(args)}


def lr_for(args, base: dict):
    """``--lr``, else the paper's MLP1024 rate for the loss (``presets.MLP_LR``; ``mae*`` when biased)
    where the dataset has one, else the dataset's preset rate."""
    from robustloss_core import presets

    def pick(loss: str, biased: bool = False) -> float:
        if args.lr:
            return args.lr
        if base.get("model") == "mlp1024":
            try:
                return presets.mlp_lr(loss, args.dataset, logit_bias=biased)
            except ValueError:
                pass
        return base["lr"]

    return pick


def data_available(args) -> DataRootError | None:
    """None if the dataset's files are there, else the error. Building it also validates the dataset
    options (the synthetic data is generated here once, a second at most)."""
    from robustloss_core.datasets import build_dataset

    try:
        build_dataset(args.dataset, args.data_root, download=args.download, **args.dataset_kwargs)
    except DataRootError as exc:
        return exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    return None


def write_json_out(path: str | None, payload: dict) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True, default=st._json_default)


def print_runs(rows: list[dict]) -> None:
    print(f"{'loss':<10} {'params':<28} {'ε':>6} {'lr':>8} {'seed':>4} {'top1':>7} {'top5':>7} {'worker-s':>9} status")
    for r in rows:
        params = cmp._fmt(r["params"])
        top1 = "-" if r["test_top1"] is None else f"{r['test_top1']:.2f}"
        top5 = "-" if r["test_top5"] is None else f"{r['test_top5']:.2f}"
        print(f"{r['loss']:<10} {params:<28} {r['logit_bias']:>6.2f} {r['lr']:>8.4g} {r['seed']:>4} {top1:>7} {top5:>7} "
              f"{r['compute_seconds']:>9.1f} {r['status']}{(': ' + r['error']) if r.get('error') else ''}")


def _record(args, mode: str) -> dict:
    keep = ("dataset", "data_root", "num_classes", "losses", "noise", "noise_rate", "noise_variant", "epochs", "seeds",
            "lr", "lrs", "search", "num_workers", "use_gpu", "gpus_per_trial", "address", "bias_c",
            "calibration_reference", "bias_schedule")
    return {"mode": mode, "args": {k: getattr(args, k, None) for k in keep}, "created": time.time()}


# ----------------------------------------------------------------------------- modes
def run_train(args, storage, name: str, resume: bool) -> dict:
    """One configuration as a Ray Train run (``TorchTrainer``; DDP when ``--num-workers`` > 1)."""
    from robustloss_core import theory
    from services.trainer import build_torch_trainer

    base = base_train(args)
    loss = args.losses[0]
    bias = theory.logit_bias(args.num_classes, c=args.bias_c) if args.logit_bias == "auto" else float(args.logit_bias)
    lr = lr_for(args, base)(loss, bias > 0)
    resources = resources_from(args)
    train = {**base, "loss": loss, "loss_params": args.loss_params, "logit_bias": bias, "lr": lr, "seed": 0}
    spec = sweeps.make_spec(train, resources, loss=loss, params=args.loss_params, logit_bias=bias, lr=lr, seed=0)
    if not resume:
        storage.write_json(_record(args, "train"), name, st.EXPERIMENT_RECORD, overwrite=False)
    t0 = time.time()
    spec["_driver_started"] = t0
    result = build_torch_trainer(spec, storage=storage, folder="", name=name).fit()
    row = sweeps.run_row(spec, result.metrics, result.error)
    res = sweeps.SweepResult(name=name, rows=[row], wall_seconds=time.time() - t0, location=storage.display(name))
    return sweeps.write_summary(storage, res, mode="train", dataset=args.dataset, num_classes=args.num_classes)


def run_grid(args, storage, name: str, resume: bool) -> dict:
    """The baseline: every loss's parameter grid × learning rates × seeds (or Optuna TPE + ASHA)."""
    base = base_train(args)
    resources = resources_from(args)
    trials = sweeps.grid_trials(base, args.losses, args.grids, args.lrs, args.seeds, resources)
    space = sweeps.OptunaSpace(args.losses, args.grids, args.lrs) if args.search == "optuna" else None
    res = sweeps.run_sweep(storage, name, trials, resources=resources, resume=resume, search=args.search,
                           search_space=space, num_samples=args.num_samples, epochs=base["epochs"],
                           record=_record(args, "grid"), verbose=0 if args.quiet else 1)
    return sweeps.write_summary(storage, res, mode="grid", search=args.search, dataset=args.dataset, num_classes=args.num_classes)


def print_calibration(calibration: dict) -> None:
    print(f"{'loss':<10} {'parameters':<34} {'ε':>7} {'target':>10} {'achieved':>10} {'residual':>9} {'seconds':>8}")
    for loss, c in calibration.items():
        tgt = "-" if c.get("target") is None else f"{c['target']:.5f}"
        ach = "-" if c.get("achieved") is None else f"{c['achieved']:.5f}"
        resid = "-" if c.get("residual") is None else f"{c['residual']:.1e}"
        print(f"{loss:<10} {cmp._fmt(c['params']):<34} {c['logit_bias']:>7.3f} {tgt:>10} {ach:>10} {resid:>9} {c['seconds']:>8.3f}")


def run_analytic(args, storage, name: str, resume: bool) -> dict:
    """ε (Eq. 4) and calibrated parameters (Sec. 3.3) for K, the error-curve figure, then one
    training run per loss and seed with those parameters (skipped with --calibrate-only or when
    the dataset's files are absent)."""
    from robustloss_core import plots, theory

    missing = getattr(args, "data_missing", None)
    t0 = time.perf_counter()
    k_ref = getattr(args, "calibration_reference", None)
    calibration = sweeps.calibrate_losses(args.losses, args.num_classes, args.dataset, c=args.bias_c,
                                          reference_classes=k_ref)
    calib_seconds = time.perf_counter() - t0
    if not resume:
        storage.write_json(_record(args, "analytic"), name, st.EXPERIMENT_RECORD, overwrite=False)
    storage.write_json({"num_classes": args.num_classes, "dataset": args.dataset, "c": args.bias_c,
                        "reference_classes": k_ref, "seconds": calib_seconds, "losses": calibration}, name, st.CALIBRATION)
    with tempfile.TemporaryDirectory() as d:
        eps = calibration.get("mae", {}).get("logit_bias") or theory.logit_bias(args.num_classes, c=args.bias_c)
        png = plots.plot_error_curves(args.losses, [args.num_classes], os.path.join(d, "error_curves.png"),
                                      params={k: v["params"] for k, v in calibration.items()}, logit_bias=eps)
        storage.upload_file(png, name, "error_curves.png")
    print(f"analytic parameters for {args.dataset} (K={args.num_classes}), computed in {calib_seconds:.2f} s:")
    print_calibration(calibration)
    summary_extra = {"mode": "analytic", "dataset": args.dataset, "num_classes": args.num_classes, "calibration": calibration}
    if args.calibrate_only or missing is not None:
        res = sweeps.SweepResult(name=name, rows=[], wall_seconds=calib_seconds, location=storage.display(name))
        summary = sweeps.write_summary(storage, res, trained=False, **summary_extra)
        if missing is not None and not args.calibrate_only:
            print(f"no training: {str(missing).splitlines()[0]}")
        return summary
    base = base_train(args)
    resources = resources_from(args)
    pick_lr = lr_for(args, base)
    trials = sweeps.analytic_trials(base, calibration, pick_lr, args.seeds, resources)
    res = sweeps.run_sweep(storage, name, trials, resources=resources, resume=resume, epochs=base["epochs"],
                           record=None, verbose=0 if args.quiet else 1)
    res.wall_seconds += calib_seconds
    return sweeps.write_summary(storage, res, trained=True, **summary_extra)


def run_compare(args, storage, name: str) -> dict:
    grid = cmp.load_summary(storage, args.grid_name)
    analytic = cmp.load_summary(storage, args.analytic_name)
    rows = cmp.compare(grid, analytic)
    files = cmp.write_report(storage, name, rows, grid=args.grid_name, analytic=args.analytic_name)
    print(cmp.to_markdown(rows))
    if args.config and getattr(args, "setting", None):  # a paper table: the paper's numbers beside ours
        from services import paper

        try:
            cfg = paper.load_paper_config(args.config)
        except ValueError:
            cfg = None
        if cfg is not None:
            matches = paper.match_rows(cfg, args.setting, rows)
            table = f"# {cfg.table}, {args.setting}: paper vs reproduced\n\n" + paper.format_paper_table(matches)
            storage.write_bytes(table.encode(), name, "paper.md")
            files["paper"] = storage.display(name, "paper.md")
            print(table)
    print("report: " + ", ".join(files.values()))
    runs = [dict(r, experiment=args.grid_name) for r in grid["runs"]] + [dict(r, experiment=args.analytic_name) for r in analytic["runs"]]
    return {"experiment": name, "mode": "compare", "grid": args.grid_name, "analytic": args.analytic_name,
            "rows": rows, "runs": runs, "files": files}


MODES = {"train": run_train, "grid": run_grid, "analytic": run_analytic}


def run(args) -> int:
    """Entry point of ``sweeps/run.py`` after parsing: every check, then Ray, then the mode."""
    storage = st.resolve_storage(args.storage_path)
    check_address(args.address)
    storage.check_writable()
    if args.mode == "compare":
        name = args.name or f"compare-{args.grid_name}-vs-{args.analytic_name}"
        if storage.exists(name) and not args.resume:  # a report is derived data, but still never replaced silently
            claim_name(storage, name, False)
        write_json_out(args.json_out, run_compare(args, storage, name))
        return 0
    if args.mode == "all":
        names = all_names(args)
        if not args.resume:
            for n in names.values():
                claim_name(storage, n, False)
    else:
        name = args.name or default_name(args, args.mode)
        resume = claim_name(storage, name, args.resume)
    args.data_missing = data_available(args)
    if args.data_missing is not None and args.mode != "analytic":
        raise args.data_missing
    if args.mode != "analytic" or (args.data_missing is None and not args.calibrate_only):
        connect(args.address)  # join the cluster (or start the embedded Ray) before anything is written
    t0 = time.time()
    if args.mode == "all":
        payload = run_all(args, storage, names)
    else:
        payload = MODES[args.mode](args, storage, name, resume)
        if payload["runs"]:
            print_runs(payload["runs"])
        print(f"{args.mode}: {len(payload['runs'])} run(s) in {time.time() - t0:.1f} s; results in {storage.display(name)}")
    write_json_out(args.json_out, payload)
    return 0


def all_names(args) -> dict:
    base = args.name or default_name(args, "all")
    return {m: f"{base}-{m}" for m in ("grid", "analytic", "compare")}


def run_all(args, storage, names: dict) -> dict:
    """Grid, analytic and compare in one go: ``<name>-grid``, ``<name>-analytic``, ``<name>-compare``.
    With ``--resume``, finished parts are kept and unfinished ones continued."""
    t0 = time.time()
    for mode in ("grid", "analytic"):
        n = names[mode]
        if storage.exists(n, st.SUMMARY):
            print(f"{mode}: {n} already finished, kept")
            continue
        print(f"== {mode} sweep -> {storage.display(n)}")
        MODES[mode](args, storage, n, resume=storage.exists(n))
    args.grid_name, args.analytic_name = names["grid"], names["analytic"]
    if storage.exists(names["compare"]):
        print(f"compare: {names['compare']} exists, rewriting its report")
    payload = run_compare(args, storage, names["compare"])
    print(f"all: grid + analytic + compare in {time.time() - t0:.1f} s; results in {storage.display(names['compare'])}")
    return payload
