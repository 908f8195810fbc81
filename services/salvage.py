"""Resume: the one path, built on what the trials themselves stored.

A driver killed with SIGKILL can leave Tune's own experiment state cut short (Tune 2.60 writes
``experiment_state-<time>.json`` in place) and any file it was copying half-written. What survives is
what each trial wrote once, itself: its checkpoints (``services.checkpoint``), each holding the full engine
state after a finished epoch (with the trial's elapsed time) or a non-finite-loss marker, and the
``TrialSpec`` with its stable ``key`` (which covers everything the trial computes: a pilot's checkpoint
never continues a main trial). So ``--resume`` never reads Tune's state; it

1. re-derives the experiment's trial list from the request (the same specs, the same keys);
2. scans every checkpoint of the experiment (Tune trial folders, and ``train/<run name>/`` for multi-worker
   Ray Train runs) for the furthest one that reads completely, per key (:func:`scan`);
3. keeps a trial whose checkpoint is at its last epoch (or marks a non-finite loss) as finished, its
   summary row rebuilt from that checkpoint — the values its run reported (:func:`plan`);
4. runs the others as a new Tune run in the same folder, each continuing from its newest checkpoint
   (``TrialSpec.resume_from``; multi-worker runs find theirs in ``train/<run name>/`` themselves), so no
   finished epoch is repeated and no finished trial runs twice.

Nothing is deleted or rewritten; a resumed run adds trial folders beside the old ones.
"""
from __future__ import annotations

from pyarrow import fs as pafs

from services import checkpoint as ckpt
from services import storage as st
from services.results import run_row
from services.spec import TrialSpec
from services.trainer import accounting


def _entries(storage: st.Storage, *parts: str):
    try:
        return storage.fs.get_file_info(pafs.FileSelector(storage.path(*parts)))
    except (FileNotFoundError, OSError):
        return []


def _progress(content: dict | None) -> float:
    """How far a checkpoint got: its epoch; a non-finite marker is final; no checkpoint is -1."""
    if content is None:
        return -1.0
    return float("inf") if "nonfinite" in content else float(content["state"]["epoch"])


def _trial_folders(storage: st.Storage, name: str):
    for e in _entries(storage, name):
        if e.type == pafs.FileType.Directory and e.base_name != "train":
            yield (name, e.base_name)
    for e in _entries(storage, name, "train"):
        if e.type == pafs.FileType.Directory:
            yield (name, "train", e.base_name)


def scan(storage: st.Storage, name: str) -> dict:
    """{spec key: {"checkpoint": path, "content": ...}}: per trial, its furthest checkpoint that reads
    completely (the kill may have cut the newest one, or a copy of it) over every folder it ran in."""
    found: dict = {}
    for folder in _trial_folders(storage, name):
        for e in _entries(storage, *folder):
            if e.type != pafs.FileType.Directory or not e.base_name.startswith("checkpoint_"):
                continue
            path = storage.path(*folder, e.base_name)
            try:
                content = ckpt.read(storage, path)
                key = content["key"]
            except Exception:  # truncated or half-copied (torch/zip/pickle/json errors vary): skip it
                continue
            if key is None:    # belongs to no trial of today's format (services.checkpoint.key_of)
                continue
            prev = found.get(key)
            if prev is None or _progress(content) > _progress(prev["content"]):
                found[key] = {"checkpoint": path, "content": content}
    return found


def checkpoint_row(spec: TrialSpec, content: dict, error=None) -> dict:
    """The summary row a checkpoint gives: its non-finite marker as an error, else the metrics and compute
    it recorded (``error`` marks a trial that failed afterwards)."""
    if "nonfinite" in content:
        return run_row(spec, {}, RuntimeError(content["nonfinite"]))
    state = content["state"]
    metrics = {**state["metrics"], **accounting(spec, float(state.get("robustloss_elapsed", 0.0)))}
    return run_row(spec, metrics, error)


def finished_row(spec: TrialSpec, content: dict) -> dict | None:
    """The summary row of a trial whose checkpoint says it is done, else None."""
    if "nonfinite" not in content and int(content["state"]["epoch"]) < int(spec.train_config()["epochs"]):
        return None
    return checkpoint_row(spec, content)


def plan(storage: st.Storage, name: str, specs: list[TrialSpec]) -> tuple[list[dict], list[TrialSpec], dict]:
    """Split ``specs`` into (rows of finished trials, specs to run, {key: scan entry}). A spec to run
    carries ``resume_from`` = its newest checkpoint where one exists (single-process trials)."""
    import dataclasses

    found = scan(storage, name)
    rows, todo = [], []
    for spec in specs:
        hit = found.get(spec.key)
        row = finished_row(spec, hit["content"]) if hit else None
        if row is not None:
            rows.append(row)
        elif hit and spec.num_workers == 1:
            todo.append(dataclasses.replace(spec, resume_from=hit["checkpoint"]))
        else:
            todo.append(spec)
    return rows, todo, found
