"""The checkpoint format of a trial, written by ``services.trainer`` and read back by ``services.salvage``.

A checkpoint is a folder holding either the engine's full state after a finished epoch (``STATE_FILE``,
``engine.save_checkpoint``; the trial's elapsed wall time under ``robustloss_elapsed``) or a
non-finite-loss marker (``NONFINITE_FILE``: the run diverged, its retries fail at once), and always the
trial's ``TrialSpec`` (``SPEC_FILE``), so a checkpoint says which trial it belongs to.

The trial writes its checkpoints to the storage itself, once, while Tune's driver re-copies
``params.json`` at every snapshot, so a killed driver can leave ``params.json`` cut short but not the
spec copy here.
"""
from __future__ import annotations

import json
import os

from robustloss_core import engine
from services.spec import SPEC_FORMAT, TrialSpec, spec_key

STATE_FILE = "state.pt"
NONFINITE_FILE = "nonfinite.json"
SPEC_FILE = "spec.json"


def write(folder: str, spec: TrialSpec, *, state: dict | None = None, nonfinite: str | None = None) -> None:
    """Fill ``folder`` with one checkpoint: ``state`` (an ``engine`` state) or the ``nonfinite`` reason, and the spec."""
    if (state is None) == (nonfinite is None):
        raise ValueError("a checkpoint holds either an engine state or a non-finite-loss marker")
    if state is not None:
        engine.save_checkpoint(state, os.path.join(folder, STATE_FILE))
    else:
        with open(os.path.join(folder, NONFINITE_FILE), "w") as f:
            json.dump({"reason": nonfinite}, f)
    with open(os.path.join(folder, SPEC_FILE), "w") as f:
        json.dump(spec.to_dict(), f)


def restore(checkpoint) -> dict | None:
    """The engine state in a Ray checkpoint (None for none); raises NonFiniteLossError for a marker, so a
    retried trial that diverged fails at once instead of training again."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        marker = os.path.join(d, NONFINITE_FILE)
        if os.path.exists(marker):
            with open(marker) as f:
                raise engine.NonFiniteLossError(json.load(f)["reason"])
        return engine.load_checkpoint(os.path.join(d, STATE_FILE))


def read(storage, path: str) -> dict:
    """One stored checkpoint folder, read as a resumed trial reads it (:func:`restore`):
    {"state": engine state} or {"nonfinite": reason}, with {"spec": spec dict (:func:`upgraded`), "key": its
    trial's key (None: no trial's)}. Raises on a folder cut short (the caller skips it)."""
    from ray import tune

    try:
        content = {"state": restore(tune.Checkpoint(path, filesystem=storage.fs))}
    except engine.NonFiniteLossError as exc:
        content = {"nonfinite": str(exc)}
    with storage.fs.open_input_stream(f"{path}/{SPEC_FILE}") as f:
        content["spec"] = json.loads(f.read().decode())
    content["spec"] = upgraded(content)
    content["key"] = None if content["spec"] is None else content["spec"]["key"]
    return content


def upgraded(content: dict) -> dict | None:
    """The spec dict of a checkpoint in today's format (None: it belongs to no trial). Older spec.json
    files (no ``format``) recorded a pilot with its main trial's ``train`` and key, because the pilot's
    shorter ``epochs`` were kept outside the spec: the epochs the checkpoint's own state trained with are
    put back, and the key recomputed from them (an old pilot's non-finite marker has no state to tell:
    None). Main trials' keys are unchanged, so experiments stored before still resume."""
    spec = content["spec"]
    if spec.get("format", 1) >= SPEC_FORMAT or spec.get("role", "main") == "main":
        return spec
    if "state" not in content:
        return None
    train = {**spec["train"], "epochs": int(content["state"]["config"]["epochs"])}
    return {**spec, "train": train, "key": spec_key(spec["hparams"], train), "format": SPEC_FORMAT}


# ----------------------------------------------------------------------------- what an ended trial keeps
KEEP = ("last", "all", "none")
WEIGHTS = ("model", "optimizer", "rng")   # what ``none`` drops: the rest (epoch, metrics, history) still resumes


def _folders(storage, trial_path: str) -> list[str]:
    from pyarrow import fs as pafs

    try:
        infos = storage.fs.get_file_info(pafs.FileSelector(trial_path))
    except (FileNotFoundError, OSError):
        return []
    found = [i for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")]
    return [i.path for i in sorted(found, key=lambda i: i.base_name)]


def prune(storage, trial_path: str, keep: str) -> int:
    """After a trial ended (``--keep-checkpoints``): ``last`` removes all but its newest checkpoint, ``none``
    also drops that one's weights (``WEIGHTS``; metrics and history stay, so ``--resume`` keeps the trial
    and compare reads it), ``all`` keeps everything. Returns the bytes freed (an estimate for object stores)."""
    import io

    import torch

    folders = _folders(storage, trial_path)
    if keep == "all" or not folders:
        return 0
    freed = 0
    for old in folders[:-1]:
        freed += _size(storage, old)
        storage.fs.delete_dir(old)
    state_path = f"{folders[-1]}/{STATE_FILE}"
    if keep == "none":
        try:
            with storage.fs.open_input_stream(state_path) as f:
                data = f.read()
        except (FileNotFoundError, OSError):   # a non-finite marker: no weights to drop
            return freed
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        kept = {k: v for k, v in state.items() if k not in WEIGHTS}
        kept["weights"] = "pruned (--keep-checkpoints none)"
        buf = io.BytesIO()
        torch.save(kept, buf)
        with storage.fs.open_output_stream(state_path) as f:
            f.write(buf.getvalue())
        freed += len(data) - len(buf.getvalue())
    return freed


def _size(storage, folder: str) -> int:
    from pyarrow import fs as pafs

    try:
        return sum(i.size or 0 for i in storage.fs.get_file_info(pafs.FileSelector(folder, recursive=True)))
    except (FileNotFoundError, OSError):
        return 0


def pruner(storage, keep: str):
    """A Tune driver callback applying :func:`prune` to each trial when it ends (completed, stopped or failed
    for good). Multi-worker trials keep Ray Train's own ``num_to_keep`` under ``train/``."""
    from ray.tune import Callback

    from services import _private_api as private

    class Pruner(Callback):
        freed = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.freed += prune(storage, private.trial_folders(trial)[1], keep)

        def on_trial_error(self, iteration, trials, trial, **info):   # a resume continues it: keep its weights
            self.freed += prune(storage, private.trial_folders(trial)[1], "last" if keep == "none" else keep)

    return Pruner()
