"""``--dry-run``: the trials a request would run, per phase and loss, with their trial-epochs and the estimate,
built by the modes' own trial lists (``services.app``); starts no Ray and writes nothing."""
from __future__ import annotations

from services.estimate import print_plan


def dry_run(req) -> int:
    """``--dry-run``: the trials each phase would run (per loss), their trial-epochs and the estimate;
    starts no Ray and writes nothing (a ``--resume`` counts the finished trials it would keep)."""
    from services import search
    from services import storage as st
    from services.app import _fixed, analytic_calibration, analytic_trials, grid_trials  # noqa: I001

    phases = {}
    if req.mode in ("grid", "all", "train"):
        fixed = _fixed(req, "grid" if req.mode != "train" else "train")
        hparams = grid_trials(req, fixed)[0] if req.mode != "train" else [{"loss": req.losses[0]}]
        if search.STRATEGIES[req.search].samples:   # the searcher picks the losses: one row of "any"
            hparams = [{"loss": "any"}] * (req.num_samples or len(hparams))
        phases["train" if req.mode == "train" else "grid"] = (fixed, hparams, {})
    if req.mode in ("analytic", "all") and not req.calibrate_only:
        sigma = 1.0 if req.sigma == "auto" else float(req.sigma)
        calibration = analytic_calibration(req, sigma)
        fixed = _fixed(req, "analytic")
        phases["analytic"] = (fixed, analytic_trials(req, fixed, calibration, sigma),
                              {loss: c["label"] for loss, c in calibration.items()})
    storage = st.resolve_storage(st.resolve_user_path(req.storage_path))
    return print_plan(req, phases, storage, req.name if req.resume else None)
