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

Plain Python (PyYAML only); importing this module starts nothing. A config's flags are checked by the flags'
own rules (``services.options``, ``services.request.check_value``), when a config is loaded.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAPER_DIR = REPO / "sweeps" / "configs" / "paper"

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
def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _fail(path, msg: str):
    raise PaperConfigError(f"{path}: {msg}".replace("\n", " "))


def check_flags(flags: dict, where: str, path) -> None:
    """Known CLI keys whose values the flags' own rules allow (``services.options``: type, choices, range; one-line
    PaperConfigError otherwise)."""
    from services.options import BY_NAME, PAPER_KEYS
    from services.request import RequestError, check_value, coerce

    if not isinstance(flags, dict):
        _fail(path, f"{where}: expected a mapping of CLI flags, got {type(flags).__name__}")
    unknown = sorted(str(k) for k in flags if k not in PAPER_KEYS)
    if unknown:
        _fail(path, f"{where}: unknown CLI key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(PAPER_KEYS))}")
    for key, value in flags.items():
        try:
            check_value(key, coerce(key, value, BY_NAME[key].default), shown=key)
        except RequestError as exc:
            _fail(path, f"{where}: {exc}")


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
    from services.options import BY_NAME

    if spec["loss"] not in BY_NAME["losses"].allowed():
        _fail(path, f"{where}: unknown loss {spec['loss']!r}; choose from {', '.join(BY_NAME['losses'].allowed())}")
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
    from services.rules import RequestError, read_yaml

    path = Path(path)
    try:
        data = read_yaml(str(path), "paper config")
    except RequestError as exc:   # "paper config '<path>': file not found" / ": malformed YAML at line N: ..."
        raise PaperConfigError(str(exc)) from None
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
