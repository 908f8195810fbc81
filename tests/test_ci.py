"""CI installs the Debian packages the real-data tests read: .ci/run's list is the datasets' own."""
import re
from pathlib import Path

from robustloss_core import datasets, glyphs

REPO = Path(__file__).resolve().parents[1]


def test_ci_installs_every_real_data_package():
    listed = re.search(r'^PACKAGES="([^"]*)"', (REPO / ".ci" / "run").read_text(), re.M).group(1).split()
    assert sorted(listed) == sorted({"dataset-fashion-mnist", *glyphs.PACKAGES})
    assert datasets.spec("fashionmnist").install.split()[-1] == "dataset-fashion-mnist"
    assert datasets.spec("glyphs").install == "apt-get install " + " ".join(glyphs.PACKAGES)
