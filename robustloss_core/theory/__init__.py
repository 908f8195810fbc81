"""Early-learning theory of Staats, Thamm & Rosenow (AAAI 2025), Sec. 3 and Appendix A.2-A.4.

At initialisation the logits are i.i.d. N(0, sigma^2); everything here is an expectation over that
distribution, deterministic for a seed, and takes ``sigma`` (``measure_sigma`` measures it for a model):

* ``backprop``     Eq. 3, the mean back-propagation error <delta_y>(z) of the correct neuron;
* ``logit_bias``   Eq. 4, the logit bias epsilon(K) with E[p_y] = c;
* ``calibration``  Sec. 3.3 / A.4, hyperparameters matched to a reference K, admissibility (z* match, peak,
                   Eq. 3 progress-coordinate band, term shares: rescalings rejected), the
                   per-loss recipes, the solution set (Fig. 6) and its pilot candidates;
* ``init_check``   A.3, the initial-logit statistics and sigma of a model.
"""
from .backprop import METHODS, ErrorCurve, mean_backprop_error
from .backprop import log_s_pool as _log_s_pool, other_logits as _other_logits  # noqa: F401 (caches, benchmarks)
from .calibration import (BAND_BOUND, BAND_END, CALIBRATION_RECIPES, DEFAULT_BRACKETS, PEAK_BOUND, PEAK_Z, SHARE_TOL,
                          TERMS, Calibration, NoSolutionError, Recipe, Reference, Step, admissibility, calibrate,
                          calibration_scan, curve_z, default_calibration, pilot_candidates, solution_set)
from .init_check import initial_logit_stats, measure_sigma
from .logit_bias import expected_py, logit_bias, logit_bias_asymptote
from .logit_bias import py_table as _py_table  # noqa: F401

__all__ = ["METHODS", "ErrorCurve", "mean_backprop_error", "expected_py", "logit_bias", "logit_bias_asymptote",
           "Calibration", "NoSolutionError", "Step", "Reference", "Recipe", "CALIBRATION_RECIPES", "DEFAULT_BRACKETS",
           "PEAK_Z", "PEAK_BOUND", "BAND_BOUND", "BAND_END", "SHARE_TOL", "TERMS", "curve_z", "admissibility", "calibrate", "calibration_scan", "default_calibration", "solution_set",
           "pilot_candidates", "initial_logit_stats", "measure_sigma"]
