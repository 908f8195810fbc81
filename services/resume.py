"""``--resume``: an experiment is its stored request, and nothing a resume does can lose a result.

* :func:`continued` — the request a ``--resume --name N`` runs: N's stored request (``robustloss.json``),
  with the options the user set on top. An option that would change the trial set or what a trial
  computes (anything outside ``MAY_CHANGE``) and differs from the stored value is refused, naming the
  options, exit 2, before Ray starts; so is a name with no experiment. A bare ``--resume --name N``
  continues N exactly as it was asked.
* :func:`all_rows` — the rows ``summary.json`` gets: the rows of this run, plus a row for every trial
  folder of the experiment this run did not list, and for a trial this run only kept (``--resume``
  of a finished trial) the row the previous summary holds, so a finished row never changes or goes.
"""
from __future__ import annotations

import json

from services import search
from services import storage as st
from services.options import MAY_CHANGE_ON_RESUME
from services.request import RESOLVED, RequestError, SweepRequest, flag

# Options a resume may change (``Option.resume``): where the experiment is, how many trials run at once,
# retries, checkpoint timing, trackers and output; and what the search allows (``Strategy.resume_may_change``:
# a sampling search's budget). Every other option decides which trials exist or what they compute.
MAY_CHANGE = MAY_CHANGE_ON_RESUME


def stored_request(storage: st.Storage, name: str) -> dict | None:
    """The request experiment ``name`` was started with, or None when there is no such experiment.
    ``--mode all`` stores it in ``<name>-grid``: that one is returned with its mode set back to all."""
    if storage.exists(name, st.EXPERIMENT_RECORD):
        return dict(storage.read_json(name, st.EXPERIMENT_RECORD)["request"])
    for part in ("grid", "analytic"):
        if storage.exists(f"{name}-{part}", st.EXPERIMENT_RECORD):
            request = dict(storage.read_json(f"{name}-{part}", st.EXPERIMENT_RECORD)["request"])
            if request.get("name") == name:
                return {**request, "mode": "all"}
    return None


def _shown(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def continued(req: SweepRequest) -> SweepRequest:
    """The validated request ``--resume --name N`` runs (see the module docstring); RequestError otherwise."""
    storage = st.resolve_storage(st.resolve_user_path(req.storage_path))
    if not req.name:
        raise RequestError("--resume needs --name of the experiment to continue")
    stored = stored_request(storage, req.name)
    if stored is None:
        if storage.exists(req.name):   # a folder without its request: stopped before anything was trained
            print(f"--resume: {storage.display(req.name)} has no {st.EXPERIMENT_RECORD}; running the request as given")
            return req.validated()
        raise RequestError(f"--resume: no experiment {req.name!r} at {storage.display()}; drop --resume to start it")
    names = SweepRequest.option_names()
    base = {k: v for k, v in stored.items() if k in names and k not in RESOLVED}
    given = {k: getattr(req, k) for k in req.given if k in names}
    grids = {"grids": stored.get("grids") or {}}   # a resume never reads the grid file again (it may be gone)
    before = SweepRequest.from_options(given=(), **{**base, "name": req.name, "resume": True}).replace(**grids).validated()
    after = SweepRequest.from_options(given=set(given), **{**base, **given, "name": req.name, "resume": True}
                                      ).replace(**grids).validated()
    may = MAY_CHANGE | search.STRATEGIES[after.search].resume_may_change
    old, new = before.record(), after.record()
    differ = [k for k in new if k not in may and _shown(new[k]) != _shown(old.get(k))]
    if differ:
        named = [k for k in differ if k in given] or differ
        changes = ", ".join(f"{flag(k)} ({_shown(old.get(k))} -> {_shown(new[k])})" for k in named)
        raise RequestError(f"--resume --name {req.name}: {changes} would change the experiment's trials; a resume "
                           f"continues the stored request ({st.EXPERIMENT_RECORD}): drop those flags, or start "
                           "another --name")
    return after


def _from_checkpoint(spec_dict: dict, content: dict) -> dict:
    """The summary row a trial folder's checkpoint gives (its stored key and role kept)."""
    from services import salvage
    from services.spec import TrialSpec

    row = salvage.checkpoint_row(TrialSpec.from_dict(spec_dict), content)
    return {**row, "key": spec_dict.get("key", row["key"]), "role": spec_dict.get("role", row["role"])}


def all_rows(storage: st.Storage, name: str, rows: list[dict]) -> list[dict]:
    """``rows`` completed from the experiment's folder (see the module docstring). A row that this run did
    not train (no ``started_at``: rebuilt from a checkpoint) is replaced by the previous summary's row of the
    same trial (key and role), so resuming a finished experiment changes no row."""
    from services import salvage

    previous = {}
    if storage.exists(name, st.SUMMARY):
        try:
            previous = {(r.get("key"), r.get("role")): r for r in storage.read_json(name, st.SUMMARY).get("runs", [])}
        except (ValueError, OSError):   # a summary cut by a kill: the folders below still hold every trial
            previous = {}
    out = [previous.get((r.get("key"), r.get("role")), r) if r.get("started_at") is None else r for r in rows]
    listed = {r.get("key") for r in out}
    for key, hit in salvage.scan(storage, name).items():
        if key not in listed:
            out.append(previous.get((key, hit["content"]["spec"].get("role", "main")))
                       or _from_checkpoint(hit["content"]["spec"], hit["content"]))
            listed.add(key)
    for (key, _), row in previous.items():   # a trial whose folder is unreadable now: its row stays
        if key not in listed:
            out.append(row)
            listed.add(key)
    return out


def unfinished_rows(storage: st.Storage, name: str) -> list[dict]:
    """The rows an experiment's checkpoints give before its ``summary.json`` exists (``services.resume``)."""
    record = storage.read_json(name, st.EXPERIMENT_RECORD) if storage.exists(name, st.EXPERIMENT_RECORD) else {}
    pruned = (record.get("request") or {}).get("search") == "optuna"   # there "stopped" is ASHA's own stop
    rows = all_rows(storage, name, [])
    return [dict(r, status="unfinished") if r["status"] == "stopped" and not pruned else r for r in rows]
