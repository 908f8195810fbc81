"""Resume: the one path, built on what the trials themselves stored.

A driver killed with SIGKILL can leave Tune's own experiment state cut short (Tune 2.60 writes
``experiment_state-<time>.json`` in place) and any file it was copying half-written. What survives is
what each trial wrote once, itself: its checkpoints (``services.checkpoint``), each holding the full engine
state after a finished epoch (with the trial's elapsed time) or a non-finite-loss marker, and the
``TrialSpec`` with its stable ``key`` (which covers everything the trial computes: a pilot's checkpoint
never continues a main trial). So ``--resume`` never reads Tune's state to decide what runs; it

1. re-derives the experiment's trial list from the request (the same specs, the same keys);
2. scans every checkpoint of the experiment (Tune trial folders, and ``train/<run name>/`` for multi-worker
   Ray Train runs) for the furthest one that reads completely, per key (:func:`scan`);
3. keeps a trial whose checkpoint is at its last epoch (or marks a non-finite loss) as finished, its
   summary row rebuilt from that checkpoint — the values its run reported (:func:`plan`);
4. runs the others as a new Tune run in the same folder, each continuing from its newest checkpoint
   (``TrialSpec.resume_from``; multi-worker runs find theirs in ``train/<run name>/`` themselves), so no
   finished epoch is repeated and no finished trial runs twice.

One experiment across resumes: a trial's folder is named by its hyperparameters and its spec key, not by
Tune's per-run trial id (``services.sweeps``), so a resumed trial runs **in its own folder**: its
``result.json`` / ``progress.csv`` go on where they stopped (:func:`in_place`, as Tune's driver re-copies its
staging copy over them), its checkpoints continue their numbering (:func:`next_checkpoint_index`), and
its TensorBoard event files sit beside the earlier ones — one run per trial. After each Tune run the
newest ``experiment_state-*.json`` is made to list every trial of every run once, the newest view of each
folder winning (:func:`merge_experiment_states`), so Tune's own ``ExperimentAnalysis(<experiment>)`` sees
the whole experiment. Nothing a trial stored is deleted; old experiment-state files stay as Tune wrote them.
"""
from __future__ import annotations

import json
import os
import re

from pyarrow import fs as pafs

from services import _private_api as private
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


# ----------------------------------------------------------------------------- one experiment across resumes
CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)$")
HISTORY = ("result.json", "progress.csv")   # what Tune's loggers append to, in its driver's staging folder
STATE_GLOB = re.compile(r"experiment_state-.+\.json$")


def next_checkpoint_index(fs, trial_path: str) -> int:
    """The highest ``checkpoint_<n>`` index already in a trial folder (-1: none): a trial resumed in its
    folder numbers its checkpoints after it, so names sort in time (``checkpoint.prune`` keeps the last)."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    except OSError:
        return -1
    found = [int(m.group(1)) for i in infos if i.type == pafs.FileType.Directory
             and (m := CHECKPOINT_DIR.match(i.base_name))]
    return max(found, default=-1)


def in_place():
    """A Tune driver callback: when a trial starts in a folder an earlier run of it left (a resume), its
    stored ``result.json`` / ``progress.csv`` are copied into the driver's staging folder first, so Tune's
    loggers (which run after this callback) append to them and its re-copy to the storage keeps every row."""
    from ray.tune import Callback

    class InPlace(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            fs, remote, local = private.trial_folders(trial)
            for file in HISTORY:
                target = f"{local}/{file}"
                try:
                    if os.path.exists(target) or fs.get_file_info(f"{remote}/{file}").type != pafs.FileType.File:
                        continue
                    with fs.open_input_stream(f"{remote}/{file}") as f:
                        data = f.read()
                except OSError:
                    continue
                os.makedirs(local, exist_ok=True)
                with open(target, "wb") as out:
                    out.write(data if data.endswith(b"\n") or not data else data[: data.rfind(b"\n") + 1])

    return InPlace()


def _states(storage: st.Storage, name: str) -> list[str]:
    return sorted(e.base_name for e in _entries(storage, name)
                  if e.type == pafs.FileType.File and STATE_GLOB.match(e.base_name))


def _folder_of(entry) -> str | None:
    """The trial folder an ``experiment_state`` entry (json state, run metadata) belongs to."""
    try:
        return private.state_entry_folder(entry)
    except Exception:   # an entry of an older or cut state: left out
        return None


def merge_experiment_states(storage: st.Storage, name: str) -> int:
    """Make the newest ``experiment_state-*.json`` of experiment ``name`` list every trial folder any
    readable state file lists, each once: the newest file's view of a folder wins (a resumed trial's entry
    replaces the interrupted run's). Unreadable (cut) files are skipped. Returns the trials listed."""
    files = _states(storage, name)
    entries: dict = {}
    newest = None
    for file in files:
        try:
            with storage.fs.open_input_stream(storage.path(name, file)) as f:
                state = json.loads(f.read().decode())
        except (OSError, ValueError):
            continue
        newest = (file, state)
        for entry in state.get("trial_data", []):
            folder = _folder_of(entry)
            if folder is not None:
                entries.pop(folder, None)
                entries[folder] = entry
    if newest is None:
        return 0
    file, state = newest
    if file != files[-1] or len(state.get("trial_data", [])) != len(entries):   # (the newest may be cut)
        state["trial_data"] = list(entries.values())
        _write_atomic(storage, storage.path(name, files[-1]), json.dumps(state, indent=2).encode())
    return len(entries)


def _write_atomic(storage: st.Storage, path: str, data: bytes) -> None:
    """Write ``path`` whole (a temporary file renamed over it on a filesystem; one PUT on an object store)."""
    if not storage.is_local:
        with storage.fs.open_output_stream(path) as f:
            f.write(data)
        return
    tmp = f"{path}.tmp"
    with storage.fs.open_output_stream(tmp) as f:
        f.write(data)
    storage.fs.move(tmp, path)
