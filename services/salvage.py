"""Resume a grid sweep whose Tune experiment state cannot be read.

Ray Tune (2.60) writes ``experiment_state-<time>.json`` in place (open, then ``json.dump``), so a
driver killed during that write leaves the file truncated. ``Tuner.restore`` then restores no trials
and the "resumed" sweep reports nothing. ``run_sweep(resume=True)`` therefore checks the newest state
first (:func:`state_readable`); when it does not parse, a grid sweep is rebuilt from what its trials
stored themselves (:func:`prepare`):

* every trial folder holds ``params.json`` (its spec, ``{"trial": spec}``) and its newest
  ``checkpoint_*/state.pt`` (the full engine state after the last finished epoch, with the trial's
  elapsed time) — or the non-finite-loss marker — with ``spec.json``, a copy of the spec. The driver
  re-copies ``params.json`` at every snapshot, so the kill can cut it too; then that copy names the trial;
* a spec whose checkpoint is at the last epoch (or marks a non-finite loss) is done: its summary row
  comes from the checkpoint and is kept in ``salvaged.json``;
* the others run again as a new Tune run in the same folder, each continuing from its newest
  checkpoint (``spec["resume_from"]``), so no finished epoch is repeated.

Nothing is deleted: the unreadable state, its search-algorithm state and ``tuner.pkl`` are renamed
``<file>.unreadable-<time>``. Multi-worker trials keep their checkpoints under ``<exp>/train/`` (Ray
Train runs); they restart from epoch 1 here.
"""
from __future__ import annotations

import json
import re
import time

from pyarrow import fs as pafs

from services import storage as st

SALVAGED = "salvaged.json"
_STATE = re.compile(r"^experiment_state-(.+)\.json$")


def _entries(storage: st.Storage, *parts: str):
    try:
        return storage.fs.get_file_info(pafs.FileSelector(storage.path(*parts)))
    except (FileNotFoundError, OSError):
        return []


def newest_state(storage: st.Storage, name: str) -> str | None:
    """File name of the newest ``experiment_state-*.json`` of the experiment (None if there is none)."""
    names = sorted(e.base_name for e in _entries(storage, name) if _STATE.match(e.base_name))
    return names[-1] if names else None


def state_readable(storage: st.Storage, name: str) -> bool:
    """Whether the newest Tune experiment state parses (False also when there is none)."""
    newest = newest_state(storage, name)
    if newest is None:
        return False
    try:
        with storage.fs.open_input_stream(storage.path(name, newest)) as f:
            json.loads(f.read().decode())
        return True
    except (ValueError, OSError):
        return False


def _key(spec: dict) -> str:
    return json.dumps(spec["train"], sort_keys=True)


def _newest_checkpoint(storage: st.Storage, *trial_dir: str) -> tuple[str | None, dict | None]:
    """(path, content) of the trial's newest checkpoint that reads completely; the kill that cut the
    experiment state short may also have cut the checkpoint being copied, so older ones are tried."""
    ckpts = sorted((e.base_name for e in _entries(storage, *trial_dir)
                    if e.type == pafs.FileType.Directory and e.base_name.startswith("checkpoint_")), reverse=True)
    for c in ckpts:
        path = storage.path(*trial_dir, c)
        try:
            return path, _read_checkpoint(storage, path)
        except Exception:  # truncated or half-copied (torch/zip/pickle errors vary): try the one before
            continue
    return None, None


def _read_checkpoint(storage: st.Storage, path: str) -> dict:
    """{"nonfinite": reason} or {"state": engine state} of one checkpoint folder, read as a resumed
    trial reads it (``trainer._restore``), with {"spec": trial spec} where the checkpoint holds one."""
    from ray import tune

    from robustloss_core.engine import NonFiniteLossError
    from services.trainer import SPEC_FILE, _restore

    try:
        content = {"state": _restore(tune.Checkpoint(path, filesystem=storage.fs))}
    except NonFiniteLossError as exc:
        content = {"nonfinite": str(exc)}
    try:
        with storage.fs.open_input_stream(f"{path}/{SPEC_FILE}") as f:
            content["spec"] = json.loads(f.read().decode())
    except (FileNotFoundError, OSError, ValueError):   # checkpoints written before spec.json existed
        pass
    return content


def _progress(content: dict | None) -> float:
    """How far a checkpoint got: its epoch; a non-finite marker is final; no checkpoint is -1."""
    if content is None:
        return -1.0
    return float("inf") if "nonfinite" in content else float(content["state"]["epoch"])


def scan(storage: st.Storage, name: str) -> dict:
    """{spec key: {"spec", "checkpoint" (path or None), "content" (see _read_checkpoint or None)}} over
    the experiment's trial folders; where a spec ran in several folders the furthest checkpoint wins.
    A folder's spec is its ``params.json`` or, where the kill cut that, its newest checkpoint's copy."""
    found: dict = {}
    for e in _entries(storage, name):
        if e.type != pafs.FileType.Directory:
            continue
        try:
            with storage.fs.open_input_stream(storage.path(name, e.base_name, "params.json")) as f:
                spec = json.loads(f.read().decode()).get("trial")
        except (FileNotFoundError, OSError, ValueError, AttributeError):
            spec = None
        ckpt, content = _newest_checkpoint(storage, name, e.base_name)
        if not isinstance(spec, dict) or "train" not in spec:
            spec = (content or {}).get("spec")
        if not isinstance(spec, dict) or "train" not in spec:
            continue
        entry = {"spec": spec, "checkpoint": ckpt, "content": content}
        prev = found.get(_key(spec))
        if prev is None or _progress(entry["content"]) > _progress(prev["content"]):
            found[_key(spec)] = entry
    return found


def prepare(storage: st.Storage, name: str, trials: list[dict]) -> tuple[list[dict], list[dict], list[str]]:
    """Set the unreadable state aside and split ``trials`` into finished rows and specs to run.

    Returns (rows of finished trials, specs to run — with ``resume_from`` where a checkpoint exists,
    the files set aside). The rows are also written to ``salvaged.json`` (merged with earlier ones)."""
    from services.sweeps import run_row
    from services.trainer import accounting

    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    aside = []
    newest = newest_state(storage, name)
    suffix = _STATE.match(newest).group(1) if newest else None
    for e in _entries(storage, name):
        n = e.base_name
        if n == "tuner.pkl" or (suffix and n in (newest, f"basic-variant-state-{suffix}.json")):
            storage.fs.move(storage.path(name, n), storage.path(name, f"{n}.unreadable-{stamp}"))
            aside.append(n)

    found = scan(storage, name)
    rows, todo = [], []
    for spec in trials:
        hit = found.get(_key(spec))
        ckpt, content = (hit["checkpoint"], hit["content"]) if hit else (None, None)
        if content is None or spec["num_workers"] > 1:
            todo.append(spec)
            continue
        if "nonfinite" in content:
            rows.append(run_row(spec, {}, RuntimeError(content["nonfinite"])))
            continue
        state = content["state"]
        if int(state["epoch"]) >= int(spec["train"]["epochs"]):
            metrics = {**state["metrics"], **accounting(spec, float(state.get("robustloss_elapsed", 0.0)))}
            rows.append(run_row(spec, metrics, None))
        else:
            todo.append({**spec, "resume_from": ckpt})
    earlier = salvaged_rows(storage, name)
    known = {json.dumps(r, sort_keys=True, default=str) for r in earlier}
    merged = earlier + [r for r in rows if json.dumps(r, sort_keys=True, default=str) not in known]
    storage.write_json({"runs": merged, "set_aside": aside, "time": stamp}, name, SALVAGED)
    return merged, todo, aside


def salvaged_rows(storage: st.Storage, name: str) -> list[dict]:
    """Rows of trials finished before a salvage (``salvaged.json``), [] if there was none."""
    return storage.read_json(name, SALVAGED)["runs"] if storage.exists(name, SALVAGED) else []
