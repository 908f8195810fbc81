"""Noise-robust loss zoo with the logit bias of Staats, Thamm & Rosenow (AAAI 2025).

Every loss maps (logits z [N, K], targets y [N]) to the mean over the batch of L(p, y),
p = softmax(z). Training with a logit bias ε evaluates L on z + ε·e_y (Sec. 3.2 of the paper);
``loss.logit_bias`` is a plain float that may be reassigned between epochs (ε schedules).

Conventions (see ../shared/theory.md and reference-params.md):
  * standalone ``mae`` is Σ_k |p_k − e_k| = 2(1 − p_y); the MAE term inside ``nce_mae`` and
    ``nfl_mae`` is (1 − p_y) as in the Active-Passive-Loss code, so the published α, β keep their meaning;
  * ``sce``'s reverse CE is −A(1 − p_y) with A = −4 (paper; the SCE/APL code's label clamp at 1e-4
    corresponds to A = ln 1e-4 ≈ −9.21);
  * ``nfl`` is the exact normalised focal loss (gradient through weights and normaliser);
    ``detach_normalizer=True`` gives the APL/ALFs variant that detaches the focal weights (1 − p_j)^γ
    (same value, gradient not the loss's derivative);
  * ``bitemp`` normalises the tempered softmax by a converged Newton iteration (|Σp − 1| ≤ 1e-10 in
    float64), not a fixed number of fixed-point steps.

Numerics: everything is computed from ``log_softmax`` in float32 at least (float16/bfloat16 inputs are
upcast to float32, float64 stays float64); losses and gradients stay finite for logits of ±1e4 and p_y → 0.

``delta_y`` returns the closed-form back-propagation error ∂L_i/∂z_y of every example (bias applied,
not averaged; theory.md's table); ``delta_y_from_py`` gives it as a function of p_y for the losses that
depend on p_y only (``py_only``) and accepts numpy arrays as well as torch tensors.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch
import torch.nn.functional as F

from .presets import loss_preset

__all__ = ["LOSSES", "RobustLoss", "build_loss", "register_loss", "list_losses"]

LOSSES: dict[str, type["RobustLoss"]] = {}


def register_loss(name: str):
    """Class decorator: register a RobustLoss subclass under ``name`` (timm-style registry)."""

    def deco(cls):
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is already registered")
        cls.name = name
        LOSSES[name] = cls
        return cls

    return deco


def list_losses() -> list[str]:
    return sorted(LOSSES)


def build_loss(name: str, num_classes: int, *, logit_bias: float = 0.0, dataset: str | None = None,
               **params) -> "RobustLoss":
    """Build loss ``name`` for ``num_classes`` classes.

    Hyperparameters not given in ``params`` default to the published preset for ``dataset``
    (``presets.loss_preset``; ``dataset=None`` selects the CIFAR-10 column).
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(list_losses())}")
    return LOSSES[name](num_classes, logit_bias=logit_bias, dataset=dataset, **params)


# ----------------------------------------------------------------------------- helpers

def _as_compute_dtype(z: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32, float32/float64 unchanged."""
    return z.float() if z.dtype in (torch.float16, torch.bfloat16) else z


def _log1mexp(logp: torch.Tensor) -> torch.Tensor:
    """log(1 − e^x) for x ≤ 0, clamped at the smallest normal float so that it stays finite."""
    tiny = torch.finfo(logp.dtype).tiny
    return torch.log((-torch.expm1(logp)).clamp_min(tiny))


def _nce(log_p: torch.Tensor, logp_y: torch.Tensor) -> torch.Tensor:
    """NCE = ln p_y / Σ_j ln p_j."""
    return logp_y / log_p.sum(1)


def _nce_delta(log_p, logp_y, K):
    """∂NCE/∂z_y = [(1 − p_y)·S − ln p_y·(1 − K p_y)] / S², S = Σ_j ln p_j."""
    S = log_p.sum(1)
    p_y = logp_y.exp()
    return ((1 - p_y) * S - logp_y * (1 - K * p_y)) / S**2


def _nfl(log_p, logp_y, y, gamma, detach):
    """NFL = (1 − p_y)^γ ln p_y / Σ_j (1 − p_j)^γ ln p_j (focal weights optionally detached)."""
    w = torch.exp(gamma * _log1mexp(log_p))  # (1 − p_j)^γ, finite as p_j → 1
    if detach:
        w = w.detach()
    num = w.gather(1, y[:, None]).squeeze(1) * logp_y
    return num / (w * log_p).sum(1)


def _nfl_delta(log_p, logp_y, y, gamma):
    """Closed-form ∂NFL/∂z_y (exact, non-detached NFL).

    With g(p) = (1 − p)^γ ln p and h_j = p_j g'(p_j) = (1 − p_j)^γ − γ (1 − p_j)^(γ−1) p_j ln p_j:
    N = g(p_y), D = Σ_j g(p_j), ∂N/∂z_y = h_y (1 − p_y), ∂D/∂z_y = h_y − p_y Σ_j h_j,
    δ_y = (∂N·D − N·∂D) / D².
    """
    l1m = _log1mexp(log_p)
    p = log_p.exp()
    g = torch.exp(gamma * l1m) * log_p
    h = torch.exp(gamma * l1m) - gamma * torch.exp((gamma - 1) * l1m) * p * log_p
    p_y = logp_y.exp()
    h_y = h.gather(1, y[:, None]).squeeze(1)
    N = g.gather(1, y[:, None]).squeeze(1)
    D = g.sum(1)
    dN = h_y * (1 - p_y)
    dD = h_y - p_y * h.sum(1)
    return (dN * D - N * dD) / D**2


def _agce_py(p, a, q):
    """AGCE = [(a + 1)^q − (a + p_y)^q] / q."""
    return ((a + 1) ** q - (a + p) ** q) / q


def _agce_delta_py(p, a, q):
    """∂AGCE/∂z_y = −p_y (1 − p_y)(a + p_y)^(q−1)."""
    return -p * (1 - p) * (a + p) ** (q - 1)


def _check_real(loss: str, key: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v)):
        raise ValueError(f"{loss}: parameter {key}={v!r} must be a finite real number")
    return float(v)


# ----------------------------------------------------------------------------- base class

class RobustLoss(torch.nn.Module):
    """Base class: ``forward(logits[N, K], targets[N])`` → mean of L(softmax(z + ε·e_y), y).

    Subclasses implement ``_per_example(z, y)`` on the biased, upcast logits and, where a closed form
    exists, ``_delta(z, y)``. ``param_names`` lists the accepted hyperparameters; defaults come from
    ``presets.loss_preset`` (plus ``flag_defaults`` for switches that are not published hyperparameters).
    """

    name: str = "?"
    py_only: bool = False
    param_names: tuple[str, ...] = ()
    flag_defaults: dict = {}

    def __init__(self, num_classes: int, *, logit_bias: float = 0.0, dataset: str | None = None,
                 **params):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 2:
            raise ValueError(f"{self.name}: num_classes={num_classes!r} must be an integer >= 2")
        num_classes = int(num_classes)
        unknown = sorted(set(params) - set(self.param_names))
        if unknown:
            allowed = ", ".join(self.param_names) or "none"
            raise ValueError(f"{self.name}: unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}")
        self.num_classes = num_classes
        self.logit_bias = logit_bias
        resolved = {**self.flag_defaults, **loss_preset(self.name, dataset)["params"], **params}
        self.params = {k: (bool(v) if k in self.flag_defaults else _check_real(self.name, k, v))
                       for k, v in resolved.items()}
        self._validate()

    # -- hyperparameter checks
    def _validate(self) -> None:
        for k in ("alpha", "beta"):
            if k in self.params and self.params[k] < 0:
                raise ValueError(f"{self.name}: weight {k}={self.params[k]} must be >= 0")

    # -- the logit bias, a plain float that may be reassigned between epochs
    @property
    def logit_bias(self) -> float:
        return self._logit_bias

    @logit_bias.setter
    def logit_bias(self, value: float) -> None:
        self._logit_bias = _check_real(self.name, "logit_bias", value)

    # -- input handling
    def _prepare(self, logits: torch.Tensor, targets: torch.Tensor):
        K = self.num_classes
        if not torch.is_tensor(logits) or logits.dim() != 2 or logits.shape[1] != K:
            shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
            raise ValueError(f"{self.name}: logits shape {shape} must be 2-D [N, {K}]")
        if not logits.is_floating_point():
            raise ValueError(f"{self.name}: logits dtype {logits.dtype} must be floating point")
        if (not torch.is_tensor(targets) or targets.dim() != 1 or targets.shape[0] != logits.shape[0]
                or targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool):
            shape = tuple(targets.shape) if torch.is_tensor(targets) else type(targets).__name__
            dt = getattr(targets, "dtype", None)
            raise ValueError(f"{self.name}: targets (shape {shape}, dtype {dt}) must be a 1-D integer "
                             f"tensor of length N={logits.shape[0]}")
        y = targets.long()
        bad = (y < 0) | (y >= K)
        if bool(bad.any()):
            raise ValueError(f"{self.name}: target {int(y[bad][0])} outside the allowed range [0, {K})")
        z = _as_compute_dtype(logits)
        if self._logit_bias != 0.0:
            z = z + self._logit_bias * F.one_hot(y, K).to(z.dtype)
        return z, y

    # -- public API
    def per_example(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Un-averaged losses L_i (bias applied), shape [N]."""
        z, y = self._prepare(logits, targets)
        return self._per_example(z, y)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.per_example(logits, targets).mean()

    def delta_y(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Closed-form ∂L_i/∂z_y per example (bias applied, not averaged), shape [N]."""
        z, y = self._prepare(logits.detach(), targets)
        return self._delta(z, y)

    def delta_y_autograd(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """∂L_i/∂z_y by autograd (works for every loss, bitemp included), shape [N]."""
        z = logits.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.per_example(z, targets).sum(), z)
        return g.gather(1, targets.long()[:, None]).squeeze(1)

    def delta_y_from_py(self, p):
        """δ_y as a function of p_y (numpy arrays or torch tensors); only for ``py_only`` losses."""
        raise NotImplementedError(f"{self.name} depends on the whole softmax vector, not on p_y only")

    def _per_example(self, z, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def _delta(self, z, y):
        raise NotImplementedError(f"{self.name}: no closed-form delta_y; use delta_y_autograd")

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, logit_bias={self._logit_bias}, params={self.params}"


class _PyOnlyLoss(RobustLoss):
    """A loss that depends on p_y only: subclasses give ``_loss_logpy(ln p_y)`` and ``delta_y_from_py``."""

    py_only = True

    def _per_example(self, z, y):
        logp_y = F.log_softmax(z, dim=1).gather(1, y[:, None]).squeeze(1)
        return self._loss_logpy(logp_y)

    def _delta(self, z, y):
        p_y = F.log_softmax(z, dim=1).gather(1, y[:, None]).squeeze(1).exp()
        return self.delta_y_from_py(p_y)


def _logp(z, y):
    log_p = F.log_softmax(z, dim=1)
    return log_p, log_p.gather(1, y[:, None]).squeeze(1)


# ----------------------------------------------------------------------------- the zoo

@register_loss("ce")
class CrossEntropy(_PyOnlyLoss):
    """Cross entropy L = −ln p_y; δ_y = p_y − 1."""

    def _loss_logpy(self, logp_y):
        return -logp_y

    def delta_y_from_py(self, p):
        return p - 1


@register_loss("mae")
class MeanAbsoluteError(_PyOnlyLoss):
    """MAE L = Σ_k |p_k − e_k| = 2(1 − p_y) (Ghosh et al. 2017; Zhang & Sabuncu 2018); δ_y = −2 p_y (1 − p_y).

    With a logit bias ε this is the paper's MAE* (Staats, Thamm & Rosenow 2025).
    """

    def _loss_logpy(self, logp_y):
        return -2 * torch.expm1(logp_y)

    def delta_y_from_py(self, p):
        return -2 * p * (1 - p)


@register_loss("gce")
class GeneralizedCrossEntropy(_PyOnlyLoss):
    """Generalised CE (Zhang & Sabuncu 2018) L = (1 − p_y^q)/q, q ∈ (0, 1]; δ_y = −p_y^q (1 − p_y)."""

    param_names = ("q",)

    def _validate(self):
        q = self.params["q"]
        if not 0 < q <= 1:
            raise ValueError(f"gce: q={q} must lie in (0, 1]")

    def _loss_logpy(self, logp_y):
        q = self.params["q"]
        return -torch.expm1(q * logp_y) / q

    def delta_y_from_py(self, p):
        return -(p ** self.params["q"]) * (1 - p)


@register_loss("sce")
class SymmetricCrossEntropy(_PyOnlyLoss):
    """Symmetric CE (Wang et al. 2019) L = α·(−ln p_y) + β·RCE, RCE = −A(1 − p_y), A < 0 (default −4).

    δ_y = α(p_y − 1) + β·A·p_y(1 − p_y). The SCE/APL code clamps one-hot labels at 1e-4 (A = ln 1e-4).
    """

    param_names = ("alpha", "beta", "A")

    def _validate(self):
        super()._validate()
        if self.params["A"] >= 0:
            raise ValueError(f"sce: A={self.params['A']} must be < 0 (RCE = -A(1 - p_y))")

    def _loss_logpy(self, logp_y):
        a, b, A = self.params["alpha"], self.params["beta"], self.params["A"]
        return -a * logp_y + b * A * torch.expm1(logp_y)

    def delta_y_from_py(self, p):
        a, b, A = self.params["alpha"], self.params["beta"], self.params["A"]
        return a * (p - 1) + b * A * p * (1 - p)


@register_loss("agce")
class AsymmetricGCE(_PyOnlyLoss):
    """Asymmetric GCE (Zhou et al. 2021, "Asymmetric loss functions for learning with noisy labels")
    L = [(a + 1)^q − (a + p_y)^q]/q, a > 0, q > 0; δ_y = −p_y (1 − p_y)(a + p_y)^(q−1)."""

    param_names = ("a", "q")

    def _validate(self):
        for k in ("a", "q"):
            if self.params[k] <= 0:
                raise ValueError(f"agce: {k}={self.params[k]} must be > 0")

    def _loss_logpy(self, logp_y):
        return _agce_py(logp_y.exp(), self.params["a"], self.params["q"])

    def delta_y_from_py(self, p):
        return _agce_delta_py(p, self.params["a"], self.params["q"])


@register_loss("nce")
class NormalizedCrossEntropy(RobustLoss):
    """Normalised CE (Ma et al. 2020, "Normalized loss functions for deep learning with noisy labels")
    L = ln p_y / Σ_j ln p_j; δ_y = [(1 − p_y)·S − ln p_y·(1 − K p_y)] / S², S = Σ_j ln p_j."""

    def _per_example(self, z, y):
        return _nce(*_logp(z, y))

    def _delta(self, z, y):
        return _nce_delta(*_logp(z, y), self.num_classes)


@register_loss("nfl")
class NormalizedFocalLoss(RobustLoss):
    """Normalised focal loss (Ma et al. 2020) L = (1 − p_y)^γ ln p_y / Σ_j (1 − p_j)^γ ln p_j, γ ≥ 0.

    Exact by default; ``detach_normalizer=True`` detaches the focal weights (1 − p_j)^γ in numerator and
    normaliser as the APL/ALFs code does (a smaller gradient: its value is the same, its gradient not). ``delta_y`` is the
    closed form of the exact loss (δ_y = (∂N·D − N·∂D)/D², see ``_nfl_delta``).
    """

    param_names = ("gamma", "detach_normalizer")
    flag_defaults = {"detach_normalizer": False}

    def _validate(self):
        if self.params["gamma"] < 0:
            raise ValueError(f"{self.name}: gamma={self.params['gamma']} must be >= 0")

    def _per_example(self, z, y):
        log_p, logp_y = _logp(z, y)
        return _nfl(log_p, logp_y, y, self.params["gamma"], self.params["detach_normalizer"])

    def _delta(self, z, y):
        if self.params["detach_normalizer"]:
            raise NotImplementedError(f"{self.name}: no closed-form delta_y with detach_normalizer=True")
        log_p, logp_y = _logp(z, y)
        return _nfl_delta(log_p, logp_y, y, self.params["gamma"])


@register_loss("nce_mae")
class NCEandMAE(RobustLoss):
    """Active-passive loss NCE+MAE (Ma et al. 2020) L = α·NCE + β·(1 − p_y) (APL's MAE scale)."""

    param_names = ("alpha", "beta")

    def _per_example(self, z, y):
        log_p, logp_y = _logp(z, y)
        return self.params["alpha"] * _nce(log_p, logp_y) - self.params["beta"] * torch.expm1(logp_y)

    def _delta(self, z, y):
        log_p, logp_y = _logp(z, y)
        p_y = logp_y.exp()
        return (self.params["alpha"] * _nce_delta(log_p, logp_y, self.num_classes)
                - self.params["beta"] * p_y * (1 - p_y))


@register_loss("nfl_mae")
class NFLandMAE(NormalizedFocalLoss):
    """Active-passive loss NFL+MAE (Ma et al. 2020) L = α·NFL_γ + β·(1 − p_y) (APL's MAE scale)."""

    param_names = ("alpha", "beta", "gamma", "detach_normalizer")

    def _validate(self):
        RobustLoss._validate(self)
        super()._validate()

    def _per_example(self, z, y):
        log_p, logp_y = _logp(z, y)
        nfl = _nfl(log_p, logp_y, y, self.params["gamma"], self.params["detach_normalizer"])
        return self.params["alpha"] * nfl - self.params["beta"] * torch.expm1(logp_y)

    def _delta(self, z, y):
        p_y = F.log_softmax(z, dim=1).gather(1, y[:, None]).squeeze(1).exp()
        return self.params["alpha"] * super()._delta(z, y) - self.params["beta"] * p_y * (1 - p_y)


@register_loss("nce_agce")
class NCEandAGCE(RobustLoss):
    """Active-passive loss NCE+AGCE (Zhou et al. 2021) L = α·NCE + β·[(a + 1)^q − (a + p_y)^q]/q."""

    param_names = ("alpha", "beta", "a", "q")

    def _validate(self):
        super()._validate()
        for k in ("a", "q"):
            if self.params[k] <= 0:
                raise ValueError(f"nce_agce: {k}={self.params[k]} must be > 0")

    def _per_example(self, z, y):
        log_p, logp_y = _logp(z, y)
        P = self.params
        return P["alpha"] * _nce(log_p, logp_y) + P["beta"] * _agce_py(logp_y.exp(), P["a"], P["q"])

    def _delta(self, z, y):
        log_p, logp_y = _logp(z, y)
        P = self.params
        return (P["alpha"] * _nce_delta(log_p, logp_y, self.num_classes)
                + P["beta"] * _agce_delta_py(logp_y.exp(), P["a"], P["q"]))


# ----------------------------------------------------------------------------- bi-tempered loss

BITEMP_TOL = 1e-10      # |Σ_i p_i − 1| reached by the float64 Newton iteration on the normaliser
BITEMP_MAX_ITER = 200


def _tempered_normalizer(a0: torch.Tensor, t: float) -> torch.Tensor:
    """λ ≥ 0 with Σ_i exp_t(a0_i − λ) = 1 for rows a0 ≤ 0 with max 0 (t > 1), computed in float64.

    exp_t(x) = [1 + (1 − t)x]^(1/(1−t)); f(λ) = Σ_i exp_t(a0_i − λ) − 1 is convex and decreasing with
    f(0) ≥ 0 and f'(λ) = −Σ_i exp_t(a0_i − λ)^t, so Newton's method from λ = 0 increases monotonically to
    the root. Iterates until max |f| ≤ BITEMP_TOL (Amid et al. 2019 use a fixed number of fixed-point steps).
    """
    a0 = a0.detach().double()
    lam = torch.zeros(a0.shape[0], dtype=torch.float64, device=a0.device)
    c = t - 1.0
    for _ in range(BITEMP_MAX_ITER):
        logp = -torch.log1p(c * (lam[:, None] - a0)) / c
        f = logp.exp().sum(1) - 1
        if float(f.abs().max()) <= BITEMP_TOL:
            return lam
        lam = lam + f / torch.exp(t * logp).sum(1)
    raise RuntimeError(f"bitemp: tempered normaliser did not converge (residual {float(f.abs().max()):.3g})")


@register_loss("bitemp")
class BiTemperedLoss(RobustLoss):
    """Bi-tempered logistic loss (Amid, Warmuth, Anil & Koren 2019, NeurIPS), one-hot labels, no smoothing.

    log_t(x) = (x^(1−t) − 1)/(1 − t), exp_t(x) = [1 + (1 − t)x]_+^(1/(1−t)).
    Tempered softmax p_i = exp_t2(z_i − λ(z)) with λ such that Σ_i p_i = 1 (t2 > 1: heavy tail);
    L = Σ_i [e_i (log_t1 e_i − log_t1 p_i) − (e_i^(2−t1) − p_i^(2−t1))/(2 − t1)]
      = −log_t1 p_y + (Σ_i p_i^(2−t1) − 1)/(2 − t1),  0 ≤ t1 < 1 < t2.
    λ is found by Newton's method to |Σp − 1| ≤ 1e-10 (float64); its gradient follows from the implicit
    function theorem, ∂λ/∂z_j = p_j^t2 / Σ_i p_i^t2, so no autograd runs through the iteration.
    No closed-form delta_y (use ``delta_y_autograd``).
    """

    param_names = ("t1", "t2")

    def _validate(self):
        t1, t2 = self.params["t1"], self.params["t2"]
        if not 0 <= t1 < 1:
            raise ValueError(f"bitemp: t1={t1} must lie in [0, 1)")
        if not t2 > 1:
            raise ValueError(f"bitemp: t2={t2} must be > 1")

    def tempered_log_softmax(self, z: torch.Tensor) -> torch.Tensor:
        """ln p_i of the tempered softmax with temperature t2 (rows of z), differentiable."""
        t2 = self.params["t2"]
        a0 = z - z.max(1, keepdim=True).values.detach()  # shift invariance: any constant works
        with torch.no_grad():
            lam0 = _tempered_normalizer(a0, t2)
            logp0 = -torch.log1p((t2 - 1) * (lam0[:, None] - a0.double())) / (t2 - 1)
            w = torch.softmax(t2 * logp0, dim=1).to(z.dtype)  # ∂λ/∂a0_j = p_j^t2 / Σ p^t2
        lam = lam0.to(z.dtype) + (w * (a0 - a0.detach())).sum(1)  # value lam0, gradient w
        return -torch.log1p((t2 - 1) * (lam[:, None] - a0)) / (t2 - 1)

    def _per_example(self, z, y):
        t1 = self.params["t1"]
        logp = self.tempered_log_softmax(z)
        logp_y = logp.gather(1, y[:, None]).squeeze(1)
        neg_log_t1 = -torch.expm1((1 - t1) * logp_y) / (1 - t1)
        return neg_log_t1 + (torch.exp((2 - t1) * logp).sum(1) - 1) / (2 - t1)
