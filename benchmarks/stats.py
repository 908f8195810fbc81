"""Small helpers the benchmark scripts share: strict-JSON values, seed statistics and the verdict vocabulary."""
from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess


def finite(obj):
    """``obj`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def mean_sem(xs, *, skip_missing: bool = False) -> tuple[float, float]:
    """Mean and standard error of the mean (sample sd / √n; NaN for one value). ``skip_missing``: ignore
    None and non-finite values (NaN for none left); otherwise a NaN value (a diverged run) makes the mean NaN."""
    if skip_missing:
        xs = [x for x in xs if x is not None and math.isfinite(x)]
        if not xs:
            return math.nan, math.nan
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, math.nan
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))


def machine() -> dict:
    """The machine record every results file carries at its start and end: cores, CPU, GPU, versions, date and
    ``uptime`` (the load average: the machine is shared)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"machine": f"{os.cpu_count()}-core CPU, no GPU" if not torch.cuda.is_available() else f"{os.cpu_count()}-core CPU + GPU",
            "cpu": cpu, "cpu_count": os.cpu_count(), "cuda": torch.cuda.is_available(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__,
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}


def run_header(result: dict, title: str, counted: str) -> str:
    """A results file's head: title, machine, start → end dates and uptimes (``machine()`` records), command, and
    ``counted`` (what ran, e.g. "24 runs") with the wall time."""
    start, end = result["machine_start"], result.get("machine_end")
    return (f"# {title}\n\nmachine: {start['machine']}, {start['date_utc']} → "
            f"{(end or {}).get('date_utc', 'running')}; uptime at start: `{start['uptime']}`"
            + (f", at end: `{end['uptime']}`" if end else "")
            + f"\n\ncommand: `{result['command']}`; one process, 1 torch thread; {counted}, "
            f"{result['wall_seconds']:.0f} s\n")


# The project's one verdict vocabulary (services.compare): paired / Welch gap intervals, better | tie | worse |
# undetermined, and the README wording against the paper's direction (reproduced | contradicted | not significant).
import os as _os  # noqa: E402
import sys as _sys  # noqa: E402

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))
from services.compare import (PAPER_WORDS, VERDICTS, gap_interval, paired_ci, paper_wording, verdict,  # noqa: E402,F401
                              welch_ci)


def gap_verdict(a: dict, b: dict) -> dict:
    """{"gap", "ci95", "interval", "verdict"} of a − b from per-seed values {seed: value} (paired when the
    seeds agree, else Welch): what every benchmark script reports beside a comparison."""
    gap, ci, kind = gap_interval(a, b)
    return {"gap": gap, "ci95": ci, "interval": kind, "verdict": verdict(ci)}
