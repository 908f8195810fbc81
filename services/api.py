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
or its string; ``None`` is "not given": the default applies) and runs it on the connected Ray (an embedded
local one if none is connected, or ``address=``). Every error for a user's input is a ``RequestError`` (bad
options before Ray starts, an existing name, a missing experiment, storage, address or dataset files),
its message naming the keyword as spelt here (``epochs 'five': expected an integer``), never a CLI flag;
a misspelt keyword names the nearest.
``grid=``/``analytic=`` are the CLI's ``--grid``/``--analytic``. ``resume=True, name=N`` continues N's stored
request, as ``--resume`` does (``services.resume``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from robustloss_core.datasets import DataRootError
from services import cluster, plan, resume
from services import storage as st
from services.compare import CompareError
from services.request import RequestError, SweepRequest
from services.sweeps import ExperimentExistsError

__all__ = ["RunResult", "train", "grid", "analytic", "compare", "run_all", "load_runs", "load_summary", "RequestError",
           "ExperimentExistsError", "CompareError", "StorageError", "ClusterError", "DataError"]


class StorageError(RequestError, st.StorageError):
    """A storage path that cannot be used (``storage_path``)."""


class ClusterError(RequestError, cluster.ClusterError):
    """An ``address`` that does not lead to a running Ray cluster."""


class DataError(RequestError, DataRootError):
    """The dataset's files are missing (``data_root``, ``download``)."""


_AS_API = ((st.StorageError, StorageError), (cluster.ClusterError, ClusterError), (DataRootError, DataError))
_FLAG = re.compile(r"--([a-z][a-z0-9-]*)")


def api_words(text: str) -> str:
    """A message in the API's words: each CLI flag of an option as its keyword (``--grid-file`` ->
    ``grid_file``, ``--grid`` -> ``grid``, ``--resume`` -> ``resume``)."""
    names = SweepRequest.option_names() | {"grid", "analytic"}

    def keyword(m):
        name = m.group(1).replace("-", "_")
        return name if name in names else m.group(0)

    return _FLAG.sub(keyword, text)


def _user_error(exc: Exception) -> RequestError:
    """``exc`` (a user's-input error of any layer) as a ``RequestError`` in the API's words."""
    message = api_words(str(exc))
    if isinstance(exc, RequestError):
        return type(exc)(message)
    return next(cls(message) for base, cls in _AS_API if isinstance(exc, base))


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
    try:
        return _execute(mode, options)
    except (RequestError,) + tuple(base for base, _ in _AS_API) as exc:
        raise _user_error(exc) from None


def _execute(mode: str, options: dict) -> RunResult:
    from services import app

    options = {k: v for k, v in options.items() if v is not None}   # None: not given, the default applies
    for api_name, field_name in (("grid", "grid_name"), ("analytic", "analytic_name")):
        if api_name in options:
            options[field_name] = options.pop(api_name)
    req = SweepRequest.from_options(mode=mode, **options)
    req = resume.continued(req) if req.resume else req.validated()
    if req.dry_run:   # the plan only: no Ray, no storage
        plan.dry_run(req)
        return RunResult(name=req.name or "", location="", summary={}, storage_path=req.storage_path, rows=[])
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


def _storage(storage_path: str | None) -> st.Storage:
    try:
        return st.resolve_storage(st.resolve_user_path(storage_path))
    except st.StorageError as exc:
        raise _user_error(exc) from None


def load_summary(storage_path: str | None, name: str) -> dict:
    """The stored ``summary.json`` of experiment ``name`` (``CompareError`` if it has none yet)."""
    from services.compare import load_summary as _load

    try:
        return _load(_storage(storage_path), name)
    except CompareError as exc:
        raise _user_error(exc) from None


def load_runs(storage_path: str | None, name: str):
    """``pandas.DataFrame``, one row per trial of experiment ``name``: loss, lr, seed, logit_bias, each loss
    parameter as its own column, every metric, status and compute. An unfinished experiment (interrupted,
    or running) gives a row per trial that has a checkpoint, its ``status`` "unfinished" until its last
    epoch ("ok" after it)."""
    storage = _storage(storage_path)
    if storage.exists(name) and not storage.exists(name, st.SUMMARY):
        return _frame(resume.unfinished_rows(storage, name))
    return _frame(load_summary(storage_path, name)["runs"])


def _frame(rows: list[dict]):
    import pandas as pd

    from services.sweeps import flat_rows

    return pd.DataFrame(flat_rows(rows))
