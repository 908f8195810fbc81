"""The paper's reported results beside runnable sweep configs (Tables 2, 3, 5 and 6).

Each table x dataset x noise kind has one YAML under ``sweeps/configs/paper/``::

    table: "Table 2"                 # where in the paper
    description: ...
    base: {mode: analytic, dataset: cifar10, model: resnet32, losses: [...], seeds: 5, ...}   # CLI flags
    settings: {sym-0: {noise: none, noise_rate: 0.0}, sym-10: {noise_rate: 0.1}, ...}        # one invocation each
    row_lr: {CE: 0.001, ...}         # optional: paper row -> learning rate (Table 5's per-loss rates)
    row_losses:                      # paper row label -> how we run it
      CE: {loss: ce}
      "MAE*": {loss: mae, logit_bias: auto, mode: analytic}
      MAE: {loss: mae, logit_bias: 0, flags: {mode: grid, losses: [mae], grid_file: ..., lrs: [0.1]}}
      genCE+: {loss: gce, calibrated: true, mode: analytic}
    reported:                        # the paper's numbers: setting -> row label -> [mean, sem]
      sym-0: {CE: [91.30, 0.33], ...}     # or {top1: [m, s], top5: [m, s]} (WebVision); sem may be null

Keys of a ``row_losses`` entry:
  * ``loss`` — the CLI loss name (required);
  * ``logit_bias`` — 0 (default), a number, ``auto`` (Eq. 4's ε, the "*" losses) or null (the value is
    unknown: the row pairs with any positive ε);
  * ``params`` — the published hyperparameters the row used (also checked when pairing rows);
  * ``calibrated`` — the "+" rows: parameters computed by the analytic mode (Sec. 3.3);
  * ``schedule`` — ``weaning`` for the "**" rows (ε ladder, App. A.2);
  * ``mode`` — the mode whose rows this label pairs with (``analytic`` or ``grid``), where it matters;
  * ``flags`` — CLI overrides of a companion invocation that produces this row (rows without ``flags``
    come from the setting's own invocation);
  * ``runnable: false`` — the CLI cannot produce the row (yet); ``reconstructed``/``note`` — provenance.

Plain Python (PyYAML only); importing this module starts nothing. Loss names are checked against
``robustloss_core.losses.LOSSES`` when that imports, else against a fixed list.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PAPER_DIR = REPO / "sweeps" / "configs" / "paper"

# CLI flags (``sweeps/run.py``) a paper config may set, as YAML keys.
CLI_KEYS = frozenset({
    "mode", "dataset", "data_root", "classes", "losses", "loss_params", "logit_bias", "lr", "lrs", "noise",
    "noise_rate", "noise_variant", "epochs", "batch_size", "model", "seeds", "search", "num_workers", "use_gpu",
    "gpus_per_trial", "storage_path", "name", "grid_file", "calibration_reference", "bias_c", "bias_schedule",
})


def allowed_values() -> dict:
    """Allowed values of the flags a paper config may set, from the modules that own them (issue 22: no second
    copy to drift). Imported when a config is checked, not at import: this module stays free of torch/Ray."""
    from robustloss_core import datasets, models, noise
    from services import request

    return {"mode": request.MODES, "dataset": tuple(datasets.DATASETS), "model": tuple(models.MODELS),
            "noise": noise.NOISE_KINDS,
            "noise_variant": tuple(sorted({v for vs in noise.NOISE_VARIANTS.values() for v in vs})),
            "search": request.SEARCHES, "bias_schedule": request.BIAS_SCHEDULES,
            "calibration_reference": tuple(request.calibration_references())}


FALLBACK_LOSSES = ("ce", "mae", "gce", "sce", "nce", "nfl", "agce", "nce_mae", "nfl_mae", "nce_agce", "bitemp")

TOP_KEYS = ("table", "description", "base", "settings", "row_lr", "row_losses", "reported")
ROW_KEYS = ("loss", "params", "logit_bias", "calibrated", "schedule", "mode", "flags", "runnable", "reconstructed", "note")
METRICS = ("top1", "top5")


class PaperConfigError(ValueError):
    """Malformed paper config (one-line message naming the file)."""


@dataclass
class PaperConfig:
    table: str
    description: str
    base: dict
    settings: dict            # setting -> flag overrides
    reported: dict            # setting -> label -> {"top1": (mean, sem|None), "top5": (mean, sem|None) | None}
    row_losses: dict          # label -> row spec (see the module docstring)
    path: Path
    row_lr: dict = field(default_factory=dict)   # label -> learning rate

    @property
    def name(self) -> str:
        return self.path.stem


# ----------------------------------------------------------------------------- validation helpers
_LOSS_NAMES: tuple[str, ...] | None = None


def known_losses() -> tuple[str, ...]:
    """``robustloss_core.losses.LOSSES`` if it imports, else the fixed list of the CLI's losses."""
    global _LOSS_NAMES
    if _LOSS_NAMES is None:
        try:
            from robustloss_core.losses import LOSSES

            _LOSS_NAMES = tuple(sorted(LOSSES)) or FALLBACK_LOSSES
        except Exception:  # noqa: BLE001 - any import problem: fall back to the fixed list
            _LOSS_NAMES = FALLBACK_LOSSES
    return _LOSS_NAMES


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _fail(path, msg: str):
    raise PaperConfigError(f"{path}: {msg}".replace("\n", " "))


def check_flags(flags: dict, where: str, path) -> None:
    """Known CLI keys with plausible values (one-line PaperConfigError otherwise)."""
    if not isinstance(flags, dict):
        _fail(path, f"{where}: expected a mapping of CLI flags, got {type(flags).__name__}")
    unknown = sorted(str(k) for k in flags if k not in CLI_KEYS)
    if unknown:
        _fail(path, f"{where}: unknown CLI key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(CLI_KEYS))}")
    choices = allowed_values()
    for key, allowed in choices.items():
        if key in flags and flags[key] not in allowed:
            _fail(path, f"{where}: {key} {flags[key]!r} is not one of {', '.join(allowed)}")
    if "losses" in flags:
        losses = flags["losses"]
        if isinstance(losses, str):
            losses = [s.strip() for s in losses.split(",") if s.strip()]
        if not isinstance(losses, list) or not losses:
            _fail(path, f"{where}: losses must be a non-empty list of loss names")
        for loss in losses:
            if loss not in known_losses():
                _fail(path, f"{where}: unknown loss {loss!r}; choose from {', '.join(known_losses())}")
    if "noise_rate" in flags and not (_is_num(flags["noise_rate"]) and 0.0 <= flags["noise_rate"] <= 1.0):
        _fail(path, f"{where}: noise_rate {flags['noise_rate']!r} must be a number in [0, 1]")
    for key in ("lr",):
        if key in flags and not (_is_num(flags[key]) and flags[key] > 0):
            _fail(path, f"{where}: {key} {flags[key]!r} must be a positive number")
    if "lrs" in flags:
        lrs = flags["lrs"]
        if not isinstance(lrs, list) or not lrs or not all(_is_num(x) and x > 0 for x in lrs):
            _fail(path, f"{where}: lrs must be a non-empty list of positive numbers")
    for key in ("seeds", "epochs", "batch_size", "num_workers", "classes"):
        if key in flags and not (isinstance(flags[key], int) and not isinstance(flags[key], bool) and flags[key] >= 1):
            _fail(path, f"{where}: {key} {flags[key]!r} must be a positive integer")
    if "logit_bias" in flags and flags["logit_bias"] != "auto" and not _is_num(flags["logit_bias"]):
        _fail(path, f"{where}: logit_bias {flags['logit_bias']!r} must be a number or auto")
    if "loss_params" in flags and not isinstance(flags["loss_params"], dict):
        _fail(path, f"{where}: loss_params must be a mapping")


def _pair(value, where: str, path) -> tuple[float, float | None]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and _is_num(value[0])
            and (value[1] is None or _is_num(value[1]))):
        _fail(path, f"{where}: expected [mean, sem] (sem may be null), got {value!r}")
    return float(value[0]), (None if value[1] is None else float(value[1]))


def _reported_entry(value, where: str, path) -> dict:
    if isinstance(value, dict):
        extra = sorted(str(k) for k in value if k not in METRICS)
        if extra or "top1" not in value:
            _fail(path, f"{where}: expected {{top1: [mean, sem], top5: [mean, sem]}}, got keys {sorted(map(str, value))}")
        return {m: (_pair(value[m], f"{where}.{m}", path) if m in value else None) for m in METRICS}
    return {"top1": _pair(value, where, path), "top5": None}


def _row_spec(label: str, spec, path) -> dict:
    where = f"row_losses[{label!r}]"
    if not isinstance(spec, dict) or "loss" not in spec:
        _fail(path, f"{where}: expected a mapping with a 'loss' key, got {spec!r}")
    extra = sorted(str(k) for k in spec if k not in ROW_KEYS)
    if extra:
        _fail(path, f"{where}: unknown key(s) {', '.join(extra)}; allowed: {', '.join(ROW_KEYS)}")
    if spec["loss"] not in known_losses():
        _fail(path, f"{where}: unknown loss {spec['loss']!r}; choose from {', '.join(known_losses())}")
    bias = spec.get("logit_bias", 0)
    if not (bias is None or bias == "auto" or _is_num(bias)):
        _fail(path, f"{where}: logit_bias {bias!r} must be a number, auto or null")
    params = spec.get("params", {})
    if not isinstance(params, dict) or not all(_is_num(v) for v in params.values()):
        _fail(path, f"{where}: params must be a mapping of numbers, got {params!r}")
    if spec.get("mode") not in (None, "analytic", "grid", "train"):
        _fail(path, f"{where}: mode {spec.get('mode')!r} is not analytic, grid or train")
    if spec.get("schedule") not in (None, "weaning"):
        _fail(path, f"{where}: schedule {spec.get('schedule')!r} is not weaning")
    if "flags" in spec:
        check_flags(spec["flags"], f"{where}.flags", path)
    return dict(spec)


# ----------------------------------------------------------------------------- loading
def load_paper_config(path) -> PaperConfig:
    """Parse and validate one paper config; ``PaperConfigError`` (a ValueError) with a one-line message."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        _fail(path, "file not found")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        _fail(path, f"malformed YAML{where}: {getattr(exc, 'problem', None) or str(exc).splitlines()[0]}")
    if not isinstance(data, dict):
        _fail(path, f"expected a mapping, got {type(data).__name__}")
    extra = sorted(str(k) for k in data if k not in TOP_KEYS)
    if extra:
        _fail(path, f"unknown key(s) {', '.join(extra)}; allowed: {', '.join(TOP_KEYS)}")
    for key in ("base", "settings", "reported", "row_losses"):
        if key not in data:
            _fail(path, f"missing '{key}'")
        if not isinstance(data[key], dict) or (key != "base" and not data[key]):
            _fail(path, f"'{key}' must be a non-empty mapping")
    base = data["base"]
    check_flags(base, "base", path)
    settings = {}
    for name, over in data["settings"].items():
        over = {} if over is None else over
        check_flags(over, f"settings[{name!r}]", path)
        settings[str(name)] = dict(over)
    row_losses = {str(label): _row_spec(str(label), spec, path) for label, spec in data["row_losses"].items()}
    reported = {}
    for setting, rows in data["reported"].items():
        if setting not in settings:
            _fail(path, f"reported setting {setting!r} is not in settings ({', '.join(settings)})")
        if not isinstance(rows, dict) or not rows:
            _fail(path, f"reported[{setting!r}] must be a non-empty mapping of row label -> [mean, sem]")
        for label in rows:
            if label not in row_losses:
                _fail(path, f"reported[{setting!r}] row {label!r} has no row_losses entry")
        reported[str(setting)] = {str(label): _reported_entry(v, f"reported[{setting!r}][{label!r}]", path)
                                  for label, v in rows.items()}
    used = {label for rows in reported.values() for label in rows}
    unused = [label for label in row_losses if label not in used]
    if unused:
        _fail(path, f"row_losses label(s) {', '.join(map(repr, unused))} never appear in reported")
    row_lr = data.get("row_lr") or {}
    if not isinstance(row_lr, dict):
        _fail(path, "row_lr must be a mapping of row label -> learning rate")
    for label, lr in row_lr.items():
        if label not in row_losses:
            _fail(path, f"row_lr label {label!r} has no row_losses entry")
        if not (_is_num(lr) and lr > 0):
            _fail(path, f"row_lr[{label!r}] {lr!r} must be a positive number")
    merged_check = PaperConfig(str(data.get("table", "")), str(data.get("description", "")), dict(base), settings,
                               reported, row_losses, path, {str(k): float(v) for k, v in row_lr.items()})
    for name in settings:  # the merged flags must be coherent too (e.g. noise none with rate > 0)
        flags = setting_flags(merged_check, name)
        if flags.get("noise", "none") == "none" and float(flags.get("noise_rate", 0) or 0) > 0:
            _fail(path, f"settings[{name!r}]: noise_rate {flags['noise_rate']} needs noise symmetric or asymmetric")
    return merged_check


def paper_configs(directory=None) -> list[Path]:
    """Every paper config (``*.yaml`` directly under ``sweeps/configs/paper/``; the ``grids/`` subfolder
    holds the grid files they reference), sorted by name."""
    d = Path(directory) if directory is not None else PAPER_DIR
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))


def grid_files(directory=None) -> list[Path]:
    """The one-configuration grid files the paper configs reference (``sweeps/configs/paper/grids/``)."""
    d = (Path(directory) if directory is not None else PAPER_DIR) / "grids"
    return sorted(d.glob("*.yaml")) if d.is_dir() else []


# ----------------------------------------------------------------------------- flags per setting
def _check_setting(cfg: PaperConfig, setting: str) -> None:
    if setting not in cfg.settings:
        raise ValueError(f"{cfg.path.name}: unknown setting {setting!r}; valid: {', '.join(cfg.settings)}")


def _merge(a: dict, b: dict) -> dict:
    out = {**a, **b}
    if isinstance(a.get("loss_params"), dict) and isinstance(b.get("loss_params"), dict):
        out["loss_params"] = {**a["loss_params"], **b["loss_params"]}
    return out


def setting_flags(cfg: PaperConfig, setting: str) -> dict:
    """CLI flags of ``setting``'s own invocation: ``base`` updated with the setting's overrides."""
    _check_setting(cfg, setting)
    return _merge(dict(cfg.base), cfg.settings[setting])


def row_flags(cfg: PaperConfig, setting: str, label: str) -> dict:
    """CLI flags of the invocation that produces ``label`` in ``setting`` (the setting's own, or its
    companion: the setting's flags updated with the row's ``flags``)."""
    flags = setting_flags(cfg, setting)
    spec = cfg.row_losses.get(label)
    if spec is None:
        raise ValueError(f"{cfg.path.name}: unknown row {label!r}; valid: {', '.join(cfg.row_losses)}")
    return _merge(flags, spec.get("flags") or {})


def invocations(cfg: PaperConfig, setting: str) -> list[dict]:
    """The CLI invocations that reproduce ``setting``: the setting's own, then one per distinct companion
    ``flags`` (rows marked ``runnable: false`` are left out). Each: ``{"name", "flags", "labels"}`` with
    ``flags["name"]`` set to ``<file stem>-<setting>[-<mode>-<losses>]``."""
    _check_setting(cfg, setting)
    labels = list(cfg.reported.get(setting) or cfg.row_losses)
    main = f"{cfg.name}-{setting}"
    groups: dict[str, dict] = {json.dumps({}): {"name": main, "flags": dict(setting_flags(cfg, setting), name=main), "labels": []}}
    for label in labels:
        spec = cfg.row_losses[label]
        if spec.get("runnable", True) is False:
            continue
        extra = spec.get("flags") or {}
        key = json.dumps(extra, sort_keys=True)
        if key not in groups:
            flags = row_flags(cfg, setting, label)
            losses = flags.get("losses") or []
            name = f"{main}-{flags.get('mode', 'run')}-{'+'.join(losses if isinstance(losses, list) else [losses])}"
            if any(g["name"] == name for g in groups.values()):
                name = f"{name}-{len(groups)}"
            groups[key] = {"name": name, "flags": dict(flags, name=name), "labels": []}
        groups[key]["labels"].append(label)
    return [g for g in groups.values() if g["labels"] or g["name"] == main]


# ----------------------------------------------------------------------------- reported numbers
def reported_for(cfg: PaperConfig, setting: str, label: str) -> dict | None:
    """The paper's numbers for ``label`` in ``setting``: ``{"top1": (mean, sem), "top5": (mean, sem) | None}``
    (sem None where the paper gives none), or None if the paper has no such row there."""
    _check_setting(cfg, setting)
    entry = (cfg.reported.get(setting) or {}).get(label)
    return None if entry is None else dict(entry)


# ----------------------------------------------------------------------------- pairing with reproduced rows
def _finite(v) -> bool:
    return _is_num(v)


def expected_lr(cfg: PaperConfig, setting: str, label: str) -> float | None:
    """The learning rate the paper used for ``label`` in ``setting`` where the config fixes one."""
    if label in cfg.row_lr:
        return cfg.row_lr[label]
    flags = row_flags(cfg, setting, label)
    lrs = flags.get("lrs")
    if flags.get("mode") in ("grid", "all") and isinstance(lrs, list) and len(lrs) == 1:
        return float(lrs[0])
    return float(flags["lr"]) if _is_num(flags.get("lr")) else None


def row_matches(spec: dict, row: dict, lr: float | None = None) -> bool:
    """Whether a compare/summary row (keys loss, mode, params, logit_bias[, lr]) is the run of ``spec``."""
    if row.get("loss") != spec["loss"]:
        return False
    mode = row.get("mode")
    want_mode = spec.get("mode") or ("analytic" if spec.get("calibrated") or spec.get("schedule") else None)
    if want_mode and mode and mode != want_mode:
        return False
    bias = row.get("logit_bias")
    want = spec.get("logit_bias", 0)
    if want == "auto" or want is None:
        if not ((_is_num(bias) and bias > 0) or (bias is None and want == "auto" and mode == "analytic")):
            return False
    elif float(want) == 0.0:
        if _is_num(bias) and abs(bias) > 1e-9:
            return False
    elif not (_is_num(bias) and abs(bias - float(want)) <= 1e-3):
        return False
    if not spec.get("calibrated"):
        got = row.get("params") or {}
        for key, value in (spec.get("params") or {}).items():
            if key in got and _is_num(got[key]) and not math.isclose(float(got[key]), float(value), rel_tol=1e-6, abs_tol=1e-9):
                return False
    if lr is not None and _is_num(row.get("lr")) and not math.isclose(float(row["lr"]), lr, rel_tol=1e-6):
        return False
    return True


def match_rows(cfg: PaperConfig, setting: str, rows: list[dict]) -> list[dict]:
    """Pair each paper row of ``setting`` with a reproduced row (compare/summary rows: loss, mode, params,
    logit_bias, top1_mean, top1_sem[, lr, top5_mean, top5_sem]), in the paper's row order. Labels with no
    matching row, or whose row has no finite top-1, are skipped; of several matches the first wins.

    Returns ``[{label, loss, mode, logit_bias, paper_top1, paper_sem, ours_top1, ours_sem, delta,
    paper_top5, paper_top5_sem, ours_top5, ours_top5_sem, delta_top5}]`` (delta = ours - paper)."""
    _check_setting(cfg, setting)
    out = []
    for label, paper in (cfg.reported.get(setting) or {}).items():
        spec = cfg.row_losses[label]
        lr = expected_lr(cfg, setting, label)
        row = next((r for r in rows if _finite(r.get("top1_mean")) and row_matches(spec, r, lr)), None)
        if row is None:
            continue
        p1, s1 = paper["top1"]
        p5, s5 = paper["top5"] if paper.get("top5") else (None, None)
        o5 = row.get("top5_mean") if _finite(row.get("top5_mean")) else None
        out.append({
            "label": label, "loss": row["loss"], "mode": row.get("mode"), "logit_bias": row.get("logit_bias"),
            "lr": row.get("lr"), "params": row.get("params") or {},
            "paper_top1": p1, "paper_sem": s1, "ours_top1": float(row["top1_mean"]),
            "ours_sem": float(row["top1_sem"]) if _finite(row.get("top1_sem")) else None,
            "delta": float(row["top1_mean"]) - p1,
            "paper_top5": p5, "paper_top5_sem": s5, "ours_top5": o5,
            "ours_top5_sem": float(row["top5_sem"]) if o5 is not None and _finite(row.get("top5_sem")) else None,
            "delta_top5": (o5 - p5) if (o5 is not None and p5 is not None) else None,
        })
    return out


def _pm(mean, sem) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" if sem is None else f"{mean:.2f} ± {sem:.2f}"


def _signed(v) -> str:
    return "-" if v is None else f"{v:+.2f}"


def format_paper_table(matches: list[dict]) -> str:
    """Markdown: paper vs reproduced, one line per matched paper row (top-5 columns when the paper has them)."""
    top5 = any(m.get("paper_top5") is not None for m in matches)
    head = ["paper row", "our run", "paper top-1 (%)", "ours top-1 (%)", "Δ top-1"]
    if top5:
        head += ["paper top-5 (%)", "ours top-5 (%)", "Δ top-5"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in matches:
        bias = m.get("logit_bias")
        run = f"{m.get('loss')} ({m.get('mode') or '?'}" + (f", ε={bias:.3g}" if _is_num(bias) and bias else "") + ")"
        cells = [m["label"], run, _pm(m["paper_top1"], m["paper_sem"]), _pm(m["ours_top1"], m["ours_sem"]),
                 _signed(m["delta"])]
        if top5:
            cells += [_pm(m.get("paper_top5"), m.get("paper_top5_sem")), _pm(m.get("ours_top5"), m.get("ours_top5_sem")),
                      _signed(m.get("delta_top5"))]
        lines.append("| " + " | ".join(cells) + " |")
    if not matches:
        lines.append("| (no reproduced rows yet) |" + " |" * (len(head) - 1))
    return "\n".join(lines) + "\n"
