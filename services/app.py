"""What each mode does, given a validated ``SweepRequest`` (``sweeps/run.py`` and ``services.api`` build it).

Every mode is one row of ``MODES`` (a ``Mode``: its run function, all with one signature, how it claims
its experiment name, whether it needs the dataset's files and Ray); ``execute`` looks the row up and runs
it in one order: resolve storage and check it is writable, check ``--address``, refuse an existing
experiment name unless ``--resume`` (nothing stored is overwritten), check the dataset's files — all
before Ray starts — then connect to Ray and run. What each trial trains with (lr, ε, σ, loss parameters)
is decided by ``services.resolve.resolve``, for every mode and the pilots.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

from robustloss_core.datasets import DataRootError
from services import anytime
from services import search
from services import compare as cmp
from services import progress
from services import storage as st
from services import sweeps
from services import cluster
from services.cluster import ClusterError, check_address, connect
from services.request import RequestError, SweepRequest
from services.resolve import calibrate_losses, epsilon, grid_hparams, resolve, resolve_sigma
from services.spec import Fixed, TrialSpec
from services.estimate import print_estimate
from services.progress import list_experiments, print_runs, start_text  # noqa: F401 (the CLI: ls, bare command)

UserError = (st.StorageError, ClusterError, sweeps.ExperimentExistsError, cmp.CompareError, DataRootError, RequestError)


# ----------------------------------------------------------------------------- helpers
def default_name(req: SweepRequest, mode: str) -> str:
    return f"{mode}-{req.dataset}-k{req.num_classes}-{time.strftime('%Y%m%d-%H%M%S')}"


def claim_name(storage: st.Storage, name: str, resume: bool) -> bool:
    """True if ``name`` must be resumed. Refuses an existing name without ``--resume``."""
    exists = storage.exists(name)
    if exists and not resume:
        raise sweeps.ExperimentExistsError(
            f"experiment {name!r} already exists at {storage.display(name)}; pass --resume to continue it or choose another --name")
    if resume and not exists:  # services.resume refuses it before this; a direct caller gets the same line
        raise RequestError(f"--resume: no experiment {name!r} at {storage.display()}; drop --resume to start it")
    return exists


def data_available(req: SweepRequest) -> DataRootError | None:
    """None if the dataset's files are there, else the error. Files are checked without building the
    dataset (``datasets.data_available``); only generated data (no files: cheap) and a missing file set (for
    the loader's own one-line error) are built, which also validates the dataset options."""
    from robustloss_core import datasets
    from robustloss_core.datasets import build_dataset

    if datasets.spec(req.dataset).files_present is not None and (
            req.download or datasets.data_available(req.dataset, req.data_root)):
        return None
    try:
        build_dataset(req.dataset, req.data_root, download=req.download, **req.dataset_kwargs)
    except DataRootError as exc:
        return exc
    except (ValueError, TypeError) as exc:
        raise RequestError(str(exc).splitlines()[0]) from None
    return None


def write_json_out(path: str | None, payload: dict) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True, default=st._json_default)


def _record(req: SweepRequest, mode: str) -> dict:
    return {"mode": mode, "request": req.record(), "created": time.time()}


def _fixed(req: SweepRequest, mode: str) -> Fixed:
    return Fixed(train=req.base_train(mode), resources=req.resources())


# ----------------------------------------------------------------------------- modes
# Every mode has one signature, (req, storage, name, resume, missing) -> payload, and one row of MODES.
def run_train(req: SweepRequest, storage, name: str, resume: bool, missing=None) -> dict:
    """One configuration as a Ray Train run (``TorchTrainer``; DDP when ``--num-workers`` > 1)."""
    from services.trainer import build_torch_trainer

    fixed = _fixed(req, "train")
    setting = resolve(req, req.losses[0], fixed.train, measure=measured_sigma)
    spec = TrialSpec.from_hparams(fixed, setting.hparams(1)[0])
    if setting.sigma is not None:
        print(f"--logit-bias auto: ε = {setting.logit_bias:.4g} (Eq. 4 for K={req.num_classes}, σ={setting.sigma:.3g}, "
              f"c={setting.c:g})", flush=True)
    if not resume:
        storage.write_json(_record(req, "train"), name, st.EXPERIMENT_RECORD, overwrite=False)
    t0 = time.time()
    # rank 0 logs TensorBoard (and --callbacks) itself: a train run has no Tune driver to do it
    tracking = {"folder": storage.path(name, "tracking"), "name": name, "kinds": req.callbacks} if storage.is_local else None
    result = build_torch_trainer(spec, storage=storage, folder="", name=name, started=t0, tracking=tracking).fit()
    row = sweeps.run_row(spec, result.metrics, result.error)
    res = sweeps.SweepResult(name=name, rows=[row], wall_seconds=time.time() - t0, location=storage.display(name))
    return sweeps.write_summary(storage, res, mode="train", dataset=req.dataset, num_classes=req.num_classes)


def run_grid(req: SweepRequest, storage, name: str, resume: bool, missing=None) -> dict:
    """The baseline: every loss's parameter grid × learning rates × seeds, or another search over its ranges
    (``services.search``: ``--search``, ``--scheduler``)."""
    fixed = _fixed(req, "grid")
    hparams, lrs = grid_trials(req, fixed)
    strategy = search.STRATEGIES[req.search]
    print(strategy.describe(hparams, req.num_samples, fixed.train["epochs"], req.seeds, req.scheduler), flush=True)
    seconds = print_estimate(req, fixed, strategy.trials(hparams, req.num_samples))
    progress.set_phase("grid", seconds, quiet=req.quiet)
    res = sweeps.run_sweep(storage, name, fixed, hparams, resume=resume, search=req.search, scheduler=req.scheduler,
                           search_space=search.OptunaSpace(req.losses, req.grids, lrs), num_samples=req.num_samples,
                           record=_record(req, "grid"), verbose=tune_verbosity(req), callbacks=req.callbacks,
                           optuna_url=req.optuna_storage)
    return sweeps.write_summary(storage, res, mode="grid", search=req.search, lr_protocol=req.lr_protocol,
                                dataset=req.dataset, num_classes=req.num_classes, load_average=progress.last_load())


def grid_trials(req: SweepRequest, fixed: Fixed) -> tuple[list[dict], list[float]]:
    """The grid's trials (flat hyperparameters) and every learning rate they use."""
    settings = [resolve(req, loss, fixed.train, measure=measured_sigma) for loss in req.losses]
    hparams = [hp for s in settings
               for hp in grid_hparams([s.loss], req.grids, list(s.lrs), req.seeds, logit_bias=s.logit_bias)]
    return hparams, sorted({lr for s in settings for lr in s.lrs})


def analytic_calibration(req: SweepRequest, sigma: float) -> dict:
    """``resolve.calibrate_losses`` with each loss's label: MAE* (Eq. 4's bias), GCE+ (calibrated), or the
    fallback's label where the admissibility rule rejected the calibration."""
    from robustloss_core import theory

    calibration = calibrate_losses(req.losses, req.num_classes, req.dataset, c=req.bias_c,
                                   reference_classes=req.calibration_reference, sigma=sigma)
    for loss, cal in calibration.items():
        recipe = theory.CALIBRATION_RECIPES.get(loss)
        kind = recipe.kind if recipe is not None else "none"
        cal["label"] = (cal.get("fallback") or {}).get("label", loss + "*") if cal.get("rejected") else (
            {"solve": f"{loss}+", "logit_bias": f"{loss}*"}.get(kind, loss))
    return calibration


def analytic_trials(req: SweepRequest, fixed: Fixed, calibration: dict, sigma: float) -> list[dict]:
    """The analytic mode's main trials: each loss at its computed parameters x lrs x seeds."""
    return [hp for loss, cal in calibration.items()
            for hp in resolve(req, loss, fixed.train, sigma=sigma, calibration=cal).hparams(req.seeds)]


def tune_verbosity(req: SweepRequest) -> int:
    """Tune's own status table only with ``--verbose`` (it reprints every 30 s, wider than a terminal): the
    default output is ``services.progress``'s one line."""
    return 2 if req.verbose else 0


def print_calibration(calibration: dict) -> None:
    print(f"{'loss':<10} {'parameters':<40} {'ε':>7} {'K_ref':>5} {'peak ratio':>10} {'residual':>9} {'seconds':>8}")
    for loss, c in calibration.items():
        peak = "-" if c.get("peak_ratio") is None else f"{c['peak_ratio']:.3g}"
        resid = "-" if c.get("residual") is None else f"{c['residual']:.1e}"
        ref = c.get("reference_classes") or "-"
        print(f"{c.get('label', loss).upper():<10} {cmp._fmt(c['params']):<40} {c['logit_bias']:>7.3f} {ref:>5} {peak:>10} "
              f"{resid:>9} {c['seconds']:>8.3f}")
        if c.get("rejected"):
            print(f"  {loss}: calibration rejected ({c.get('reason')}); trains the fallback {c.get('label')} instead")


def measured_sigma(req: SweepRequest) -> float:
    """σ of the initial logits (Appendix A.3) of the model that will train, on a batch of its training
    data as the engine feeds it (``--sigma auto``); the model is initialised with seed 0."""
    import torch

    from robustloss_core import datasets, models, theory

    base = req.base_train("analytic")
    bundle = datasets.build_dataset(req.dataset, req.data_root, download=req.download, seed=0, **req.dataset_kwargs)
    if bundle.tensors is not None:
        t = bundle.tensors
        x = datasets.normalize_batch(t.train_x[:512], t.mean, t.std)
    else:
        x = torch.stack([bundle.train[i][0] for i in range(min(64, len(bundle.train)))])
    torch.manual_seed(0)
    model = models.build_model(base["model"], bundle.num_classes, bundle.input_shape)
    return theory.measure_sigma(model, x)


def _pilot(req: SweepRequest, storage, name: str, resume: bool, calibration: dict, sigma: float, figures: str) -> list[dict]:
    """``--pick pilot`` (Fig. 6's step): per calibrated loss, the ``--pilots`` most different admissible
    solutions, each trained for ``--pilot-fraction`` of the epochs at one learning rate (the resolver's
    ``pilot_lr``: the shared one, or the middle of ``lrs``); the best by noisy validation top-1 replaces the
    deterministic pick. The pilots are trials of this experiment (role "pilot"), so compare charges them to
    the analytic side; their shorter ``epochs`` are part of their Fixed.train, so of their keys: a pilot
    never shares a key, or a checkpoint, with a main trial."""
    from robustloss_core import plots, theory

    base = _fixed(req, "analytic")
    epochs = max(1, round(req.pilot_fraction * base.train["epochs"]))
    fixed = dataclasses.replace(base, train={**base.train, "epochs": epochs}, role="pilot")
    hparams, by_key, scans, lrs = [], {}, {}, set()
    for loss, cal in calibration.items():
        recipe = theory.CALIBRATION_RECIPES.get(loss)
        if cal.get("rejected") or recipe is None or recipe.kind != "solve":
            continue
        scans[loss] = theory.solution_set(loss, req.num_classes, reference_classes=req.calibration_reference, sigma=sigma)
        for cand in theory.pilot_candidates(scans[loss], req.pilots):
            params = {k: v for k, v in cand["params"].items() if k != "logit_bias"}
            setting = resolve(req, loss, base.train, sigma=sigma,
                              calibration={"logit_bias": cand["params"].get("logit_bias", 0.0), "params": params})
            (hp,) = setting.hparams(1, lr=setting.pilot_lr)
            lrs.add(setting.pilot_lr)
            hparams.append(hp)
            by_key[TrialSpec.from_hparams(fixed, hp).key] = (loss, cand)
    if not hparams:
        return []
    print(f"--pick pilot: {len(hparams)} pilot trial(s) of {epochs} epoch(s) at lr {', '.join(f'{v:g}' for v in sorted(lrs))}",
          flush=True)
    progress.set_phase("pilots", None, quiet=req.quiet)
    res = sweeps.run_sweep(storage, name, fixed, hparams, resume=resume, record=None, verbose=tune_verbosity(req))
    best: dict = {}
    for row in res.rows:
        loss, cand = by_key[row["key"]]
        score = row.get("val_top1") if row.get("val_top1") is not None else -1.0
        if loss not in best or score > best[loss][0]:
            best[loss] = (score, cand)
    for loss, (score, cand) in best.items():
        cal = calibration[loss]
        cal["pick"] = {"rule": "pilot", "val_top1": score, "candidates": len([1 for v in by_key.values() if v[0] == loss]),
                       "default_params": dict(cal["params"])}
        cal["params"] = {k: v for k, v in cand["params"].items() if k != "logit_bias"}
        with tempfile.TemporaryDirectory() as d:
            png = plots.plot_solution_set(scans[loss], os.path.join(d, "f.png"), picked=cand)
            storage.upload_file(png, name, f"{figures}_{loss}.png")
    return res.rows


def run_analytic(req: SweepRequest, storage, name: str, resume: bool, missing=None) -> dict:
    """ε (Eq. 4) and calibrated parameters (Sec. 3.3) for K, the figures, then training runs with those
    parameters (skipped with --calibrate-only or when the dataset's files are absent). A calibration the
    admissibility rule rejects trains its documented fallback (the loss with Eq. 4's logit bias), labelled."""
    from robustloss_core import plots

    t0 = time.perf_counter()
    measured = None
    if req.sigma == "auto" or missing is None:
        try:
            measured = measured_sigma(req) if missing is None else None
        except Exception as exc:   # a model/data combination that cannot be measured: say so, keep going
            print(f"σ could not be measured ({str(exc).splitlines()[0]})")
    if req.sigma == "auto" and measured is None:
        raise RequestError(f"--sigma auto measures the model's initial logits on the dataset: {req.dataset}'s files "
                           f"are needed (--data-root), or give --sigma a number")
    sigma = resolve_sigma(req, lambda _: measured)
    calibration = analytic_calibration(req, sigma)
    calib_seconds = time.perf_counter() - t0
    print(f"σ of the initial logits: {sigma:.3g} used ({'measured' if req.sigma == 'auto' else 'given'}); "
          f"measured on {req.model or 'the preset model'}: {'-' if measured is None else f'{measured:.3g}'}")
    if not resume:
        storage.write_json(_record(req, "analytic"), name, st.EXPERIMENT_RECORD, overwrite=False)
    pilot_rows = []
    if req.pick == "pilot" and missing is None and not req.calibrate_only:
        pilot_rows = _pilot(req, storage, name, resume, calibration, sigma, "solution_set")
    storage.write_json({"num_classes": req.num_classes, "dataset": req.dataset, "c": req.bias_c, "sigma": sigma,
                        "sigma_measured": measured, "reference_classes": req.calibration_reference, "pick": req.pick,
                        "seconds": calib_seconds, "losses": calibration}, name, st.CALIBRATION)
    eps = epsilon(req.num_classes, req.bias_c, sigma)
    with tempfile.TemporaryDirectory() as d:
        figures = {"error_curves.png": lambda p: plots.plot_error_curves(req.losses, [req.num_classes], p,
                                                                          calibration=calibration, sigma=sigma),
                   "epsilon_vs_k.png": lambda p: plots.plot_epsilon_vs_k(p, sigma=sigma, mark={req.num_classes: eps})}
        for fname, draw in figures.items():
            storage.upload_file(draw(os.path.join(d, fname)), name, fname)
    print(f"analytic parameters for {req.dataset} (K={req.num_classes}), computed in {calib_seconds:.2f} s:")
    print_calibration(calibration)
    summary_extra = {"mode": "analytic", "dataset": req.dataset, "num_classes": req.num_classes,
                     "calibration": calibration, "lr_protocol": req.lr_protocol, "sigma": sigma}
    if req.calibrate_only or missing is not None:
        res = sweeps.SweepResult(name=name, rows=[], wall_seconds=calib_seconds, location=storage.display(name))
        summary = sweeps.write_summary(storage, res, trained=False, **summary_extra)
        if missing is not None and not req.calibrate_only:
            print(f"no training: {str(missing).splitlines()[0]}")
        return summary
    fixed = _fixed(req, "analytic")
    hparams = analytic_trials(req, fixed, calibration, sigma)
    progress.set_phase("analytic", print_estimate(req, fixed, len(hparams)), quiet=req.quiet)
    res = sweeps.run_sweep(storage, name, fixed, hparams, resume=resume, record=None,
                           verbose=tune_verbosity(req), callbacks=req.callbacks)
    res.rows = pilot_rows + res.rows
    res.wall_seconds += calib_seconds
    return sweeps.write_summary(storage, res, trained=True, load_average=progress.last_load(), **summary_extra)


def run_compare(req: SweepRequest, storage, name: str, resume: bool = False, missing=None) -> dict:
    """The grid and analytic experiments side by side (``services.compare``), the paper's numbers beside
    them for a paper-table config; a report, derived from what they stored."""
    grid = cmp.load_summary(storage, req.grid_name)
    analytic = cmp.load_summary(storage, req.analytic_name)
    rows = cmp.compare(grid, analytic, selection=req.selection)
    files = anytime.write_compare_report(storage, name, rows, grid=req.grid_name, analytic=req.analytic_name,
                                         selection=req.selection)
    print(progress.compare_table(rows, req.grid_name, req.analytic_name))
    if req.config and req.setting:  # a paper table: the paper's numbers beside ours
        from services import paper

        try:
            cfg = paper.load_paper_config(req.config)
        except ValueError:
            cfg = None
        if cfg is not None:
            matches = paper.match_rows(cfg, req.setting, rows)
            table = f"# {cfg.table}, {req.setting}: paper vs reproduced\n\n" + paper.format_paper_table(matches)
            storage.write_bytes(table.encode(), name, "paper.md")
            files["paper"] = storage.display(name, "paper.md")
            print(table)
    print("report: " + ", ".join(f.rsplit("/", 1)[-1] for f in files.values()))
    print(f"  in {storage.display(name)}")
    runs = [dict(r, experiment=req.grid_name) for r in grid["runs"]] + \
           [dict(r, experiment=req.analytic_name) for r in analytic["runs"]]
    return {"experiment": name, "mode": "compare", "grid": req.grid_name, "analytic": req.analytic_name,
            "selection": req.selection, "rows": rows, "runs": runs, "files": files}


def run_all(req: SweepRequest, storage, name: str, resume: bool = False, missing=None) -> dict:
    """Grid, analytic and compare in one go: ``<name>-grid``, ``<name>-analytic``, ``<name>-compare``.
    With ``--resume``, finished parts are kept and unfinished ones continued."""
    t0 = time.time()
    names = all_names(name)
    for mode in ("grid", "analytic"):
        n = names[mode]
        if storage.exists(n, st.SUMMARY):
            print(f"{mode}: {n} already finished, kept")
            continue
        print(f"== {mode} sweep -> {storage.display(n)}")
        MODES[mode].run(req.replace(mode=mode), storage, n, storage.exists(n))
    req = req.replace(grid_name=names["grid"], analytic_name=names["analytic"])
    if storage.exists(names["compare"]):
        print(f"compare: {names['compare']} exists, rewriting its report")
    payload = run_compare(req, storage, names["compare"])
    print(f"all: grid + analytic + compare in {time.time() - t0:.1f} s")
    return payload


def all_names(base: str) -> dict:
    """The three experiments of ``--mode all --name base``."""
    return {m: f"{base}-{m}" for m in ("grid", "analytic", "compare")}


# ----------------------------------------------------------------------------- the mode table
def _claim(req: SweepRequest, storage) -> tuple[str, bool]:
    """A training mode's experiment: ``--name`` (or a dated default), refused if it exists without ``--resume``."""
    name = req.name or default_name(req, req.mode)
    return name, claim_name(storage, name, req.resume)


def _claim_all(req: SweepRequest, storage) -> tuple[str, bool]:
    """``--mode all``: the base name of its three experiments, each refused if it exists without ``--resume``."""
    base = req.name or default_name(req, "all")
    if not req.resume:
        for n in all_names(base).values():
            claim_name(storage, n, False)
    return base, req.resume


def _claim_compare(req: SweepRequest, storage) -> tuple[str, bool]:
    """A report is derived data, but still never replaced silently: an existing one needs ``--resume``."""
    name = req.name or f"compare-{req.grid_name}-vs-{req.analytic_name}"
    return name, claim_name(storage, name, req.resume) if storage.exists(name) else False


@dataclass(frozen=True)
class Mode:
    """One row of the mode table: how it claims its experiment, what it needs before it runs, what it runs."""

    run: Callable        # (req, storage, name, resume, missing) -> payload
    claim: Callable = _claim             # (req, storage) -> (name, resume)
    data: str = "needed"                 # the dataset's files: "needed", "optional" (analytic), "unused" (compare)
    uses_ray: Callable = lambda req, missing: True
    lists_runs: bool = True              # prints the trial table and a one-line summary afterwards
    names_results: bool = True           # ends with "results: <location>" (compare names its report itself)


MODES: dict[str, Mode] = {
    "train": Mode(run_train),
    "grid": Mode(run_grid),
    # without the dataset's files (or with --calibrate-only) analytic mode computes and stores, trains nothing
    "analytic": Mode(run_analytic, data="optional", uses_ray=lambda req, missing: missing is None and not req.calibrate_only),
    "compare": Mode(run_compare, claim=_claim_compare, data="unused", uses_ray=lambda req, missing: False, lists_runs=False,
                    names_results=False),
    "all": Mode(run_all, claim=_claim_all, lists_runs=False),
}


def run(req: SweepRequest) -> int:
    """Run a validated request (the CLI's entry after parsing): every check, then Ray, then the mode."""
    return execute(req)[0]


def execute(req: SweepRequest) -> tuple[int, dict, str]:
    """(exit status, payload, experiment name) of a validated request: its row of MODES, run."""
    mode = MODES[req.mode]
    storage = st.resolve_storage(st.resolve_user_path(req.storage_path))
    check_address(req.address)
    storage.check_writable()
    print(f"storage: {storage.display()}", flush=True)
    name, resume = mode.claim(req, storage)
    missing = data_available(req) if mode.data != "unused" else None
    if missing is not None and mode.data == "needed":
        raise missing
    if mode.uses_ray(req, missing):
        # join the cluster (or start the embedded Ray) before anything is written; the job carries the
        # experiment's name and mode in the dashboard's Jobs table
        ctx = connect(req.address, job_name=f"{name} ({req.mode})", verbose=req.verbose,
                      metadata={"experiment": name, "mode": req.mode, "dataset": req.dataset,
                                "search": req.search, "storage": storage.display()})
        print(cluster.describe(ctx), flush=True)
        st.check_shared(storage, cluster.storage_nodes(), shared=req.storage_shared)
    t0 = time.time()
    try:
        payload = mode.run(req, storage, name, resume, missing)
    except KeyboardInterrupt:
        where = ["--storage-path", storage.display()] if req.storage_path else []
        print(f"\ninterrupted; continue with: {progress.interrupt_hint(name, where)}", flush=True)
        return 130, {}, name
    if mode.lists_runs:
        labels = progress.loss_labels(payload.get("calibration"))
        if payload["runs"]:
            print_runs(payload["runs"], labels)
        what = f"grid, {req.search} search" if req.mode == "grid" and req.search != "grid" else req.mode
        print(f"{what}: {len(payload['runs'])} run(s) in {time.time() - t0:.1f} s")
        for line in progress.best_lines(payload, req.selection):
            print(line[:progress.WIDTH])
    write_json_out(req.json_out, payload)
    experiment = payload.get("experiment", name)
    if mode.names_results:
        print(f"results: {storage.display(experiment)}", flush=True)
    if req.mode in ("compare", "all"):   # the last lines: one verdict per loss
        for line in progress.verdict_lines(payload["rows"]):
            print(line[:progress.WIDTH], flush=True)
    return 0, payload, experiment
