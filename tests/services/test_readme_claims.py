"""What README.md and deploy/README.md say about --resume and Tune's restore, checked against the code.
No Ray is started: the refusals happen before Ray, and Tune's trainable name is a pure function."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
DEPLOY = (REPO / "deploy" / "README.md").read_text()


def section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


RESUME_README = section(README, "**Resume.**", "**Checkpoints.**")
RESUME_DEPLOY = section(DEPLOY, "## 8. Resuming after the head restarts", "## 9.")


def documented_changeable(text: str) -> set[str]:
    """Option names of the flags a text lists as changeable on --resume ("may change only ...")."""
    part = text[text.index("may change only"):]
    part = part[:part.index("would change")]
    names = set()
    for f in re.findall(r"`(--[a-z-]+\*?)`", part):
        if f.endswith("*"):
            names |= {"checkpoint_every", "checkpoint_seconds"} if f == "--checkpoint-*" else {f}
        else:
            names.add(f[2:].replace("-", "_"))
    return names


@pytest.mark.parametrize("text", [RESUME_README, RESUME_DEPLOY], ids=["README", "deploy/README"])
def test_flags_documented_as_changeable_on_resume_are(text):
    from services.resume import MAY_CHANGE
    from services.search import STRATEGIES

    MAY_CHANGE_OPTUNA = STRATEGIES["optuna"].resume_may_change
    names = documented_changeable(text)
    assert {"max_concurrent_trials", "quiet", "num_samples"} <= names
    assert names <= MAY_CHANGE | MAY_CHANGE_OPTUNA, names - (MAY_CHANGE | MAY_CHANGE_OPTUNA)
    assert "num_samples" in MAY_CHANGE_OPTUNA and "num_samples" not in MAY_CHANGE   # "under --search optuna also"


def test_resume_of_a_missing_name_is_refused_as_documented(tmp_path):
    from services.request import RequestError
    from sweeps.run import parse_args

    with pytest.raises(RequestError) as exc:
        parse_args(["--resume", "--name", "c100-sym40-grid", "--storage-path", str(tmp_path)])
    assert str(exc.value).startswith("--resume: no experiment 'c100-sym40-grid' at ")
    assert "--resume: no experiment\n'c100-sym40-grid' at" in RESUME_DEPLOY or \
        "--resume: no experiment 'c100-sym40-grid' at" in RESUME_DEPLOY
    for stale in ("does not exist yet starts it", "carry `--resume` in its entrypoint from the start"):
        assert stale not in DEPLOY and stale not in README


def test_deploy_existence_check_exits_0_only_for_an_existing_experiment(tmp_path):
    blocks = re.findall(r"^```bash\n(.*?)^```", RESUME_DEPLOY, flags=re.S | re.M)
    check = next(b for b in blocks if "resolve_storage" in b)
    code = re.search(r'python -c "(.*?)"', check, flags=re.S).group(1)
    assert "s3://robustloss-results/sweeps c100-sym40-grid" in check
    (tmp_path / "kept").mkdir()
    rc = {n: subprocess.run([sys.executable, "-c", code, str(tmp_path), n], cwd=tmp_path).returncode
          for n in ("kept", "absent")}
    assert rc == {"kept": 0, "absent": 1}


def test_restore_snippet_names_the_trainable_tune_gets():
    from ray.tune.experiment import Experiment

    from services import sweeps
    from services.trainer import run_trial

    assert "Tuner.restore(\"<storage>/g1\", trainable=run_trial)" in README
    assert Experiment.get_trainable_name(run_trial) == "run_trial"
    # the sweep hands Tune run_trial through tune.with_parameters, which keeps the name Tune stores
    assert "tune.with_parameters(run_trial," in Path(sweeps.__file__).read_text()
