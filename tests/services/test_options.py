"""One declaration per option (services/options.py) and per search (services/search.py): the parser, the typing,
the checks, the resume rule and the paper configs' rule all follow from it; without Ray unless marked."""
import json

import pytest

from services import search
from services.options import BY_NAME, MAY_CHANGE_ON_RESUME, OPTIONS, PAPER_KEYS
from services.request import RESOLVED, RequestError, SweepRequest
from services.spec import Fixed, TrialSpec
from sweeps import run
from sweeps.run import CLIError, build_parser, parse_args

TINY = {"dataset": "synthetic", "classes": 10, "dataset_args": "train_per_class=20,test_per_class=10", "batch_size": 32}


def test_every_option_is_a_field_a_flag_and_a_config_key(tmp_path):
    fields = set(SweepRequest.__dataclass_fields__)
    assert fields == set(BY_NAME) | set(RESOLVED)
    actions = {a.dest: a for a in build_parser()._actions}
    for o in OPTIONS:
        assert o.cli in actions[o.name].option_strings and actions[o.name].help == o.help_text()
        want = (o.default if o.kind != "names" else ",".join(o.default)) if o.kind != "bool" else False
        assert actions[o.name].default == want, o.name
        assert getattr(SweepRequest(), o.name) == o.default   # one default, the declaration's
    assert actions["grid_name"].option_strings == ["--grid"]   # the alias, declared once, reaches the config and API
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mode: compare\ngrid: g\nanalytic: a\n")
    assert (parse_args(["--config", str(cfg)]).grid_name, SweepRequest.from_options(grid="g").grid_name) == ("g", "g")


def test_resume_and_paper_rules_come_from_the_table():
    from services import paper, resume

    assert resume.MAY_CHANGE == MAY_CHANGE_ON_RESUME and {"max_concurrent_trials", "quiet"} <= MAY_CHANGE_ON_RESUME
    assert not {"losses", "lrs", "epochs", "search", "scheduler", "num_workers"} & MAY_CHANGE_ON_RESUME
    assert {"mode", "dataset", "lrs", "calibration_reference", "bias_schedule"} <= PAPER_KEYS
    with pytest.raises(paper.PaperConfigError, match="base: lrs -0.1 must be > 0"):
        paper.check_flags({"lrs": [-0.1]}, "base", "x.yaml")
    with pytest.raises(paper.PaperConfigError, match="base: seeds 0 must be an integer >= 1"):
        paper.check_flags({"seeds": 0}, "base", "x.yaml")


def test_selection_choices_are_compares():
    from services.compare import SELECTIONS

    assert BY_NAME["selection"].choices == tuple(SELECTIONS)


def test_grid_file_lrs_are_checked_like_the_flag(tmp_path, no_ray, capsys):
    """`lrs: [-0.1]` in a grid file is refused as `--lrs -0.1` is: one line, exit 2, before Ray, nothing stored."""
    grid = tmp_path / "g.yaml"
    grid.write_text("lrs: [0.1, -0.1]\nlosses:\n  ce: {}\n")
    store = tmp_path / "store"
    assert run.main(["--mode", "grid", "--losses", "ce", "--grid-file", str(grid), "--storage-path", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --grid-file {str(grid)!r}: lrs -0.1 must be > 0", err
    assert run.main(["--mode", "grid", "--losses", "ce", "--lrs", "0.1,-0.1", "--storage-path", str(store)]) == 2
    assert capsys.readouterr().err.strip() == "error: --lrs -0.1 must be > 0"
    assert not store.exists()
    grid.write_text("lrs: [0.1, x]\nlosses:\n  ce: {}\n")
    with pytest.raises(RequestError, match="--lrs 'x': expected a list of numbers"):
        parse_args(["--mode", "grid", "--losses", "ce", "--grid-file", str(grid)])


def test_a_dataset_alias_is_normalised_once():
    req = parse_args(["--mode", "grid", "--losses", "ce", "--dataset", "fmnist", "--lrs", "0.1"])
    assert (req.dataset, req.num_classes, req.record()["dataset"]) == ("fashionmnist", 10, "fashionmnist")


@pytest.mark.parametrize("argv, needle", [
    (["--mode", "grid", "--search", "random", "--val-fraction", "0"], "so --selection val would choose on test"),
    (["--mode", "grid", "--search", "random", "--scheduler", "asha", "--val-fraction", "0"], "so --scheduler asha (ASHA)"),
    (["--mode", "grid", "--scheduler", "asha", "--val-fraction", "0"], "so --scheduler asha (ASHA) would choose"),
    (["--mode", "grid", "--search", "optuna", "--scheduler", "none", "--val-fraction", "0"], "--search optuna (TPE)"),
    (["--mode", "analytic", "--scheduler", "asha"], "--scheduler asha has no effect in --mode analytic"),
    (["--mode", "grid", "--search", "annealing"], "--search: invalid choice: 'annealing' (choose from 'grid', 'optuna', 'random')"),
    (["--mode", "grid", "--scheduler", "hyperband"], "--scheduler: invalid choice: 'hyperband' (choose from 'auto', 'none', 'asha')"),
    (["--mode", "grid", "--num-samples", "4"], "--num-samples 4 has no effect without --search optuna or random"),
])
def test_search_and_scheduler_refusals(argv, needle):
    with pytest.raises(CLIError) as err:
        parse_args(argv)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_random_search_and_asha_from_the_registries(tmp_path):
    """random: Optuna's RandomSampler over the optuna space, no scheduler unless asked; ASHA's rungs are where
    every search's trials checkpoint."""
    import optuna

    from services.storage import resolve_storage

    req = parse_args(["--mode", "grid", "--search", "random", "--num-samples", "5", "--losses", "gce", "--lrs", "0.01,0.1"])
    assert (req.search, req.scheduler, req.num_samples) == ("random", "auto", 5)
    assert search.scheduler_of("random", "auto") is search.SCHEDULERS["none"]
    assert search.scheduler_of("optuna", "auto") is search.SCHEDULERS["asha"]
    assert search.scheduler_of("grid", "asha").rungs(9) == (2, 6)
    assert search.STRATEGIES["random"].resume_may_change == {"num_samples"}
    fixed = Fixed(train={"epochs": 4, "val_fraction": 0.1})
    space = search.OptunaSpace(["gce"], {"gce": {"q": [0.3, 0.9]}}, [0.01, 0.1])
    sweep = search.Sweep(resolve_storage(tmp_path), "r", fixed, [], space=space, num_samples=5)
    for name, sampler in (("random", optuna.samplers.RandomSampler), ("optuna", optuna.samplers.TPESampler)):
        config = search.STRATEGIES[name].tune_config(sweep, 5)
        assert config["num_samples"] == 5 and isinstance(config["search_alg"]._sampler, sampler)
    assert (tmp_path / "r" / "optuna.journal").exists()
    assert space.distributions("gce")["q"] == optuna.distributions.FloatDistribution(0.3, 0.9)


def test_grid_resume_keeps_a_trial_asha_stopped(tmp_path, capsys):
    """Under a scheduler, a grid trial stopped at a rung (stopped.json) is kept on --resume, not trained on;
    an interrupted one continues from its checkpoint."""
    from test_resume import trial

    from services.storage import resolve_storage

    storage = resolve_storage(tmp_path)
    fixed = Fixed(train={"dataset": "synthetic", "epochs": 4, "batch_size": 8, "val_fraction": 0.0,
                         "dataset_args": {"classes": 4, "train_per_class": 8, "test_per_class": 4}}, experiment="kr")
    stopped, cut = (TrialSpec.from_hparams(fixed, {"loss": "ce", "lr": lr, "seed": 0}) for lr in (0.01, 0.02))
    trial(tmp_path / "kr", "a", stopped, 1)
    trial(tmp_path / "kr", "b", cut, 1)
    storage.write_json([stopped.key], "kr", search.STOPPED)
    sweep = search.Sweep(storage, "kr", fixed, [stopped, cut], scheduler=search.SCHEDULERS["asha"])
    done, todo = search.STRATEGIES["grid"].plan(sweep, resume=True)
    assert [r["key"] for r in done] == [stopped.key] and done[0]["status"] == "stopped" and done[0]["epochs"] == 1
    assert todo == 1 and [s.key for s in sweep.specs] == [cut.key] and fixed.extras[cut.key]["resume_from"]
    assert "1 trial(s) finished and kept, 1 to run (1 from their last checkpoint)" in capsys.readouterr().out


@pytest.mark.ray
def test_random_search_with_asha_runs_and_resumes(tmp_path):
    """`--search random --scheduler asha`: sampled configurations, ASHA's stops, the study in optuna.journal;
    `--resume` with a larger budget continues it and keeps every row."""
    import optuna
    from conftest import run_cli
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    grid = tmp_path / "grid.yaml"
    grid.write_text("lrs: [0.01, 0.1]\nlosses:\n  gce:\n    q: [0.3, 0.9]\n")
    out = tmp_path / "o.json"
    args = ["--mode", "grid", "--search", "random", "--scheduler", "asha", "--name", "rnd", "--losses", "gce",
            "--epochs", "4", "--grid-file", str(grid), "--storage-path", str(tmp_path / "store"), "--json-out", str(out),
            "--quiet", *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]]
    proc = run_cli(args + ["--num-samples", "3"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "random: 3 trial(s)" in proc.stdout
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 3 and len({r["params"]["q"] for r in runs}) == 3
    assert all(0.3 <= r["params"]["q"] <= 0.9 and 0.01 <= r["lr"] <= 0.1 for r in runs)
    assert {r["status"] for r in runs} <= {"ok", "stopped"}
    journal = JournalStorage(JournalFileBackend(str(tmp_path / "store" / "rnd" / "optuna.journal")))
    assert len(optuna.load_study(study_name="rnd", storage=journal).trials) == 3
    more = run_cli(args + ["--num-samples", "5", "--resume"])
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    assert len(optuna.load_study(study_name="rnd", storage=journal).trials) == 5
    assert len(json.loads(out.read_text())["runs"]) == 5
