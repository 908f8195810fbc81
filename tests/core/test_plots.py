"""robustloss_core.plots writes real, non-empty PNG figures."""
import numpy as np
import pytest

from robustloss_core import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path, min_bytes=10_000):
    with open(path, "rb") as fh:
        data = fh.read()
    return data[:8] == PNG_MAGIC and len(data) >= min_bytes


def test_plot_error_curves(tmp_path):
    out = plots.plot_error_curves(["ce", "mae", "gce", "nce_mae"], [10, 100], tmp_path / "sub" / "fig2.png",
                                  params={"gce": {"q": 0.7}}, logit_bias="auto", z=np.linspace(-4, 12, 40))
    assert out == str(tmp_path / "sub" / "fig2.png") and _is_png(out)


def test_plot_error_curves_labelled_specs_and_float_bias(tmp_path):
    out = plots.plot_error_curves([("genCE+", "gce", {"q": 0.48}), ("MAE", "mae", {})], 1000,
                                  tmp_path / "fig1.png", logit_bias=6.09, z=np.linspace(-4, 12, 30))
    assert _is_png(out)


def test_plot_logit_bias_vs_classes(tmp_path):
    out = plots.plot_logit_bias_vs_classes(tmp_path / "fig4.png", ks=[2, 10, 100, 1000], c=[0.25, 0.5])
    assert _is_png(out)


def test_plot_calibration_scan(tmp_path):
    scan = {"loss": "nce_agce", "num_classes": 1000, "target": -0.02145, "solve_for": "beta",
            "grid": {"alpha": [1.0, 10.0, 138.8]},
            "rows": [{"alpha": 1.0, "beta": 10.8, "trivial": False}, {"alpha": 10.0, "beta": 10.2, "trivial": False},
                     {"alpha": 138.8, "beta": 1.388, "trivial": True}, {"alpha": 300.0, "beta": None}]}
    assert _is_png(plots.plot_calibration_scan(scan, tmp_path / "fig6.png"), min_bytes=5_000)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="PNG"):
        plots.plot_logit_bias_vs_classes(tmp_path / "fig4.pdf")
    with pytest.raises(ValueError, match="logit_bias"):
        plots.plot_error_curves(["ce"], [10], tmp_path / "x.png", logit_bias="big", z=np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="empty"):
        plots.plot_error_curves([], [10], tmp_path / "x.png")
