"""Python API beside the CLI, for notebooks and scripts: the same options as the flags, as keywords.

    from services import api
    g = api.grid(dataset="synthetic", classes=10, losses=["mae", "gce"], lrs=[0.03, 0.1], epochs=5,
                 storage_path="/data/rl", name="g1")
    a = api.analytic(dataset="synthetic", classes=10, losses=["mae", "gce"], lrs=[0.03, 0.1], epochs=5,
                     storage_path="/data/rl", name="a1")
    c = api.compare(grid="g1", analytic="a1", storage_path="/data/rl")
    df = api.load_runs("/data/rl", "g1")       # one row per trial, every hyperparameter and metric a column

Each call builds a ``SweepRequest`` (``services.request``), types and validates it exactly as the CLI does
(a list is a list or a comma string, ``lrs="0.03,0.1"``; a mapping a dict or ``"k=v,k=v"``; a number a number
or its string; a bad option raises ``RequestError`` before Ray starts, a misspelt keyword names the nearest)
and runs it on the connected Ray (an embedded local one if none is connected, or ``address=``).
``grid=``/``analytic=`` are the CLI's ``--grid``/``--analytic``. ``resume=True, name=N`` continues N's stored
request, as ``--resume`` does (``services.resume``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from services import resume
from services import storage as st
from services.request import RequestError, SweepRequest

__all__ = ["RunResult", "train", "grid", "analytic", "compare", "run_all", "load_runs", "load_summary", "RequestError"]


@dataclass
class RunResult:
    """What a mode returned: its experiment name and location, the summary it stored, its rows."""

    name: str
    location: str
    summary: dict
    storage_path: str = ""
    rows: list = field(default_factory=list)

    def dataframe(self):
        """The rows as a ``pandas.DataFrame`` (loss parameters as their own columns)."""
        return _frame(self.rows)


def _run(mode: str, options: dict) -> RunResult:
    from services import app

    for api_name, field_name in (("grid", "grid_name"), ("analytic", "analytic_name")):
        if api_name in options:
            options[field_name] = options.pop(api_name)
    req = SweepRequest.from_options(mode=mode, **options)
    req = resume.continued(req) if req.resume else req.validated()
    _, payload, name = app.execute(req)
    root = st.resolve_user_path(req.storage_path)
    storage = st.resolve_storage(root)
    return RunResult(name=name, location=storage.display(name), summary=payload, storage_path=root,
                     rows=list(payload.get("rows" if mode in ("compare", "all") else "runs", [])))


def train(**options) -> RunResult:
    """One Ray Train run (``--mode train``)."""
    return _run("train", options)


def grid(**options) -> RunResult:
    """The baseline grid (or ``search="optuna"``) sweep (``--mode grid``)."""
    return _run("grid", options)


def analytic(**options) -> RunResult:
    """The paper's analytic mode (``--mode analytic``): parameters from K, then training."""
    return _run("analytic", options)


def compare(**options) -> RunResult:
    """Compare two stored experiments (``--mode compare``; ``grid=``, ``analytic=`` name them)."""
    return _run("compare", options)


def run_all(**options) -> RunResult:
    """Grid, analytic and compare in one go (``--mode all``)."""
    return _run("all", options)


def load_summary(storage_path: str | None, name: str) -> dict:
    """The stored ``summary.json`` of experiment ``name``."""
    from services.compare import load_summary as _load

    return _load(st.resolve_storage(st.resolve_user_path(storage_path)), name)


def load_runs(storage_path: str | None, name: str):
    """``pandas.DataFrame``, one row per trial of experiment ``name``: loss, lr, seed, logit_bias, each loss
    parameter as its own column, every metric, status and compute."""
    return _frame(load_summary(storage_path, name)["runs"])


def _frame(rows: list[dict]):
    import pandas as pd

    from services.sweeps import flat_rows

    return pd.DataFrame(flat_rows(rows))
