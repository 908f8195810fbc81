"""One rule for what a trial trains with: its learning rate, logit bias ε (with the σ and c it was computed from)
and loss parameters, for every mode and for the pilots. Nothing else decides these values: the trials' flat
hyperparameters (Tune's ``config``) are built here, and ``Fixed.train`` holds none of them.

* learning rate (:func:`learning_rates`): ``--lr`` in ``--mode train`` and under the ``shared``
  protocol; else, in a sweep, the searched ``lrs`` (``--lrs`` or the grid file's, :func:`sweep_lrs`); else
  (``--mode train``) the paper's MLP1024 rate for the loss (``presets.mlp_lr``, ``mae*`` when ε > 0) where the
  dataset has one, else the dataset's training setup (:func:`preset_lr`).
  A pilot trains at the middle of these (:attr:`Setting.pilot_lr`).
* σ of the initial logits (:func:`resolve_sigma`): ``--sigma``, or the model's measured one for ``--sigma auto``.
* ε and the loss parameters: the calibration (analytic mode and pilots: :func:`calibrate_losses`,
  ``theory.default_calibration``, which applies Eq. 4 with σ and c for MAE*); else ``--logit-bias`` (``auto``:
  Eq. 4, :func:`epsilon`, the one place ε is computed) and ``--loss-params``. A grid sweeps its own parameter
  grids and ``logit_bias`` list where its grid file gives them (:func:`grid_hparams`) and trains at this ε
  otherwise.

:func:`resolve` gives one loss's :class:`Setting`; ``services.app`` calls it in ``run_train``, ``grid_trials``,
``analytic_trials`` and ``_pilot``.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Setting:
    """What one loss of a request trains with."""

    loss: str
    lrs: tuple                  # the learning rates its main trials train at (one unless searched)
    logit_bias: float           # ε
    sigma: float | None         # σ of the initial logits ε was computed for (None: ε not from Eq. 4)
    c: float                    # Eq. 4's target E[p_y]
    params: dict = field(default_factory=dict)   # the loss's own parameters (a grid sweeps its own instead)

    @property
    def pilot_lr(self) -> float:
        """A pilot's one learning rate: the middle of ``lrs`` (the upper middle for an even count)."""
        return sorted(self.lrs)[len(self.lrs) // 2]

    def hparams(self, seeds: int, *, lr: float | None = None, params: dict | None = None) -> list[dict]:
        """Flat trial hyperparameters: each of ``lrs`` (or just ``lr``) × ``seeds`` seeds."""
        return [{"loss": self.loss, "lr": float(one), "seed": seed, "logit_bias": float(self.logit_bias),
                 **(self.params if params is None else params)}
                for one in ((lr,) if lr is not None else self.lrs) for seed in range(seeds)]


def resolve_sigma(req, measure: Callable[..., float]) -> float:
    """σ of the initial logits: ``--sigma``, or ``measure(req)`` for ``--sigma auto``."""
    return measure(req) if req.sigma == "auto" else float(req.sigma)


def reads_grid_file(req) -> bool:
    """Whether the request's sweep reads the grid file: a grid (its grids and lrs), or an analytic sweep that
    searches the grid file's lrs."""
    return req.mode in ("grid", "all") or (req.mode == "analytic" and req.lr_protocol == "searched")


def sweep_lrs(req, grid_lrs: list | None) -> list | None:
    """The learning rates a sweep searches (``SweepRequest.lrs`` once resolved): ``--lr`` alone under the
    shared protocol, else ``--lrs``, else the grid file's."""
    if req.lr_protocol == "shared" and req.lr is not None:
        return [float(req.lr)]
    if grid_lrs is not None:
        return list(req.lrs or grid_lrs)
    return req.lrs


def epsilon(num_classes: int, c: float, sigma: float) -> float:
    """ε of Eq. 4 for K classes: the logit bias that makes E[p_y] = c at initial logits N(0, σ²)."""
    from robustloss_core import theory

    return float(theory.logit_bias(num_classes, c=c, sigma=sigma))


def learning_rates(req, loss: str, biased: bool, base: dict) -> tuple:
    """The learning rates of ``loss`` (see the module docstring); ``base``: the request's fixed TrainConfig fields
    (``Fixed.train``: dataset, model)."""
    from robustloss_core import presets

    if req.lr is not None and (req.mode == "train" or req.lr_protocol == "shared"):
        return (float(req.lr),)
    if req.mode != "train" and req.lrs:
        return tuple(float(v) for v in req.lrs)
    if base.get("model") == "mlp1024":
        try:
            return (float(presets.mlp_lr(loss, req.dataset, logit_bias=biased)),)
        except ValueError:   # no published MLP1024 rate for this loss or dataset
            pass
    return (preset_lr(base),)


def preset_lr(train: dict) -> float:
    """The learning rate of the dataset's training setup (``presets.training_setup``) for ``train``'s dataset and
    model (the dataset's preset model where ``train`` names none): what ``TrainConfig.resolved`` fills in."""
    from robustloss_core import presets
    from robustloss_core.datasets import canonical_name
    from robustloss_core.models import default_model

    dataset = canonical_name(train.get("dataset", "synthetic"))
    model = train.get("model") or default_model(dataset)
    return float(presets.training_setup(dataset, model=model)["optimizer"]["lr"])


def resolve(req, loss: str, base: dict, *, calibration: dict | None = None, sigma: float | None = None,
            measure: Callable[..., float] | None = None) -> Setting:
    """The ``Setting`` of ``loss``: from its ``calibration`` entry (``{"logit_bias", "params"}``, as
    :func:`calibrate_losses` gives it, computed for ``sigma``) where given, else from the request's flags,
    ``--logit-bias auto`` with σ from :func:`resolve_sigma` (``measure`` measures it for ``--sigma auto``, and is
    called only then). ``base``: the request's TrainConfig fields."""
    c = float(req.bias_c)
    if calibration is not None:
        eps, params = float(calibration["logit_bias"]), dict(calibration["params"])
    elif req.logit_bias == "auto":   # Eq. 4
        sigma = resolve_sigma(req, measure) if sigma is None else sigma
        eps, params = epsilon(req.num_classes, c, sigma), dict(req.loss_params)
    else:
        eps, params = float(req.logit_bias), dict(req.loss_params)
    return Setting(loss=loss, lrs=learning_rates(req, loss, eps > 0, base), logit_bias=eps, c=c, params=params,
                   sigma=None if sigma is None else float(sigma))


def grid_hparams(losses: list[str], grids: dict, lrs: list[float], seeds: int, logit_bias: float = 0.0) -> list[dict]:
    """Per loss: its parameter grid (``grids[loss]``: lists per parameter; the key ``logit_bias`` is the
    training-time bias, not a loss parameter) × learning rates × seeds, as flat hyperparameter dicts."""
    out = []
    for loss in losses:
        grid = dict(grids.get(loss) or {})
        biases = grid.pop("logit_bias", [logit_bias])
        names = sorted(grid)
        for values in itertools.product(*(grid[n] for n in names)):
            for bias, lr, seed in itertools.product(biases, lrs, range(seeds)):
                out.append({"loss": loss, "lr": float(lr), "seed": seed, "logit_bias": float(bias),
                            **dict(zip(names, values))})
    return out


def calibrate_losses(losses: list[str], num_classes: int, dataset: str, c: float | None = None,
                     reference_classes: int | None = None, sigma: float = 1.0) -> dict:
    """The analytic step: ε (Eq. 4) for MAE*, calibrated hyperparameters (Sec. 3.3) for the others,
    from the reference setting at ``reference_classes`` (None: each recipe's own reference).
    Returns ``{loss: {"params", "logit_bias", "target", "achieved", "residual", "seconds", ...}}``."""
    from robustloss_core import theory

    out = {}
    for loss in losses:
        t0 = time.perf_counter()
        cal = theory.default_calibration(loss, num_classes, dataset=dataset, reference_classes=reference_classes,
                                         sigma=sigma, **({"c": c} if c is not None else {}))
        seconds = time.perf_counter() - t0
        row = cal.to_dict() if hasattr(cal, "to_dict") else dict(cal)
        params = dict(row.get("params") or {})
        bias = float(params.pop("logit_bias", 0.0))
        row.update(params=params, logit_bias=bias, seconds=seconds, loss=loss)
        out[loss] = row
    return out
