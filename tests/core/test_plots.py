"""robustloss_core.plots writes real PNG figures whose artists carry what issue 12 asks for: per loss
the uncalibrated, calibrated and reference curves in one colour, labelled histograms and epsilon line,
3 significant digits, the picked point of a solution set."""
import matplotlib.pyplot as plt
import numpy as np
import pytest

from robustloss_core import plots
from robustloss_core import theory as T

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
Z = np.linspace(-4, 12, 30)


def _is_png(path, min_bytes=10_000):
    with open(path, "rb") as fh:
        data = fh.read()
    return data[:8] == PNG_MAGIC and len(data) >= min_bytes


@pytest.fixture
def figures(monkeypatch):
    """The figures each plot function built (closed after saving; their artists stay inspectable)."""
    made = []
    real = plt.subplots
    monkeypatch.setattr(plots.plt, "subplots", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    return made


def test_error_curves_with_calibration(tmp_path, figures):
    cal = {loss: T.default_calibration(loss, 1000, dataset="webvision").to_dict() for loss in ("gce", "mae", "ce")}
    out = plots.plot_error_curves(["ce", "mae", "gce"], [1000], tmp_path / "sub" / "error_curves.png",
                                  calibration=cal, z=Z)
    assert out == str(tmp_path / "sub" / "error_curves.png") and _is_png(out)
    fig, axes = figures[-1]
    lines = {ln.get_label(): ln for ln in axes[0, 0].get_lines() if not ln.get_label().startswith("_")}
    q = cal["gce"]["params"]["q"]
    gce = [ln for label, ln in lines.items() if label.startswith("gce")]
    assert [ln.get_linestyle() for ln in gce] == ["--", "-", ":"]            # uncalibrated, calibrated, reference
    assert len({ln.get_color() for ln in gce}) == 1 and gce[0].get_color() == plots.LOSS_COLORS["gce"]
    assert f"q={q:.3g}" in gce[1].get_label() and f"{q:.6f}" not in gce[1].get_label()
    assert "K_ref=10" in gce[2].get_label()
    # the reference curve is the reference loss at K_ref, the calibrated one matches its value at z* = 0
    ref = T.mean_backprop_error("gce", 10, Z, params={"q": 0.7}, seed=0).mean
    assert np.allclose(gce[2].get_ydata(), ref)
    eps = cal["mae"]["params"]["logit_bias"]
    assert any(label.startswith(r"$\epsilon$ = " + f"{eps:.3g}") for label in lines)
    hist_labels = [t.get_text() for t in axes[1, 0].get_legend().get_texts()]
    assert any("N(0" in t for t in hist_labels) and any(f"{eps:.3g}" in t for t in hist_labels)
    hist_colors = {p.get_facecolor()[:3] for p in axes[1, 0].patches}
    assert not hist_colors & {plt.matplotlib.colors.to_rgb(c) for c in plots.LOSS_COLORS.values()}


def test_error_curves_names_and_triples(tmp_path):
    out = plots.plot_error_curves(["ce", "mae", "gce", "nce_mae"], [10, 100], tmp_path / "fig2.png",
                                  params={"gce": {"q": 0.7}}, logit_bias="auto", z=Z)
    assert _is_png(out)
    assert _is_png(plots.plot_error_curves([("genCE+", "gce", {"q": 0.48}), ("MAE", "mae", {})], 1000,
                                           tmp_path / "fig1.png", logit_bias=6.09, z=Z))


def test_epsilon_vs_k(tmp_path, figures):
    out = plots.plot_epsilon_vs_k(tmp_path / "fig4.png", ks=[2, 10, 100, 1000], c=[0.25, 0.5], sigma=2.6,
                                  mark={1000: T.logit_bias(1000, sigma=2.6)})
    assert _is_png(out)
    ax = figures[-1][1]
    first = ax.get_lines()[0]
    assert np.allclose(first.get_ydata(), [T.logit_bias(k, c=0.25, sigma=2.6) for k in (2, 10, 100, 1000)])
    assert plots.plot_logit_bias_vs_classes is plots.plot_epsilon_vs_k


def test_solution_set_marks_the_pick(tmp_path, figures):
    s = T.solution_set("nce_mae", 1000)
    pick = T.pilot_candidates(s, 2)[1]
    assert _is_png(plots.plot_solution_set(s, tmp_path / "fig6.png", picked=pick), min_bytes=5_000)
    fig, axes = figures[-1]
    labels = [ln.get_label() for ax in axes[0] for ln in ax.get_lines()]
    assert any(label.startswith("picked: ") and f"beta={pick['params']['beta']:.3g}" in label for label in labels)
    assert any(label.startswith("rejected") for label in labels)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="PNG"):
        plots.plot_epsilon_vs_k(tmp_path / "fig4.pdf")
    with pytest.raises(ValueError, match="logit_bias"):
        plots.plot_error_curves(["ce"], [10], tmp_path / "x.png", logit_bias="big", z=np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="empty"):
        plots.plot_error_curves([], [10], tmp_path / "x.png")
    with pytest.raises(ValueError, match="scan is invalid"):
        plots.plot_solution_set({"rows": None}, tmp_path / "x.png")
