"""Every bad input fails in one clear line (exit 2) before any Ray work, and stores nothing."""
import os

import pytest

from conftest import free_port, run_cli
from sweeps.run import CLIError, parse_args


@pytest.mark.parametrize("argv, needle", [
    (["--mode", "bogus"], "bogus"),
    (["--mode", "grid", "--losses", "ce,notaloss"], "notaloss"),
    (["--mode", "grid", "--dataset", "imagenet22k"], "imagenet22k"),
    (["--mode", "train", "--losses", "gce", "--loss-params", "q=0"], "0"),
    (["--mode", "train", "--losses", "gce", "--loss-params", "q=1.5"], "1.5"),
    (["--mode", "grid", "--noise", "symmetric", "--noise-rate", "1.5"], "1.5"),
    (["--mode", "train", "--losses", "ce,mae"], "exactly one loss"),
    (["--mode", "compare", "--grid", "a"], "--analytic"),
    (["--mode", "grid", "--lrs", "0.1,-1"], "-1"),
    (["--mode", "train", "--losses", "ce", "--logit-bias", "big"], "big"),
    (["--mode", "grid", "--classes", "1"], "--classes"),
    (["--mode", "grid", "--resume"], "--name"),
    # checks that used to pass the CLI and fail inside every trial
    (["--mode", "grid", "--noise", "asymmetric", "--noise-rate", "0.2"], "synthetic"),
    (["--mode", "grid", "--lr", "nan"], "nan"),
    (["--mode", "grid", "--lrs", "0.1,inf"], "inf"),
    (["--mode", "grid", "--noise", "symmetric", "--noise-rate", "0.2", "--noise-variant", "blocks"], "blocks"),
    (["--mode", "grid", "--dataset", "cifar10", "--noise", "asymmetric", "--noise-rate", "0.2",
      "--noise-variant", "blocks"], "blocks"),
    (["--mode", "grid", "--val-fraction", "1"], "--val-fraction"),
    (["--mode", "grid", "--val-fraction", "-0.1"], "--val-fraction"),
    (["--mode", "grid", "--callbacks", "neptune"], "neptune"),
    (["--mode", "grid", "--name", "../escape"], "../escape"),
    (["--mode", "all", "--val-fraction", "0"], "--val-fraction"),
    (["--mode", "grid", "--lr-protocol", "shared"], "--lr"),
    (["--mode", "analytic", "--search", "optuna"], "optuna"),
    (["--mode", "grid", "--sigma", "-1"], "--sigma"),
    # flags that would silently do nothing (issue 24)
    (["--mode", "grid", "--dataset", "fashionmnist", "--classes", "100"], "--classes 100: fashionmnist has a fixed"),
    (["--mode", "grid", "--noise", "symmetric"], "--noise symmetric needs --noise-rate > 0"),
    (["--mode", "grid", "--noise-rate", "0.2"], "--noise-rate 0.2 needs --noise"),
    (["--mode", "train", "--losses", "mae", "--calibrate-only"], "--calibrate-only has no effect in --mode train"),
    (["--mode", "train", "--losses", "mae", "--lrs", "0.1,0.3"], "--lrs 0.1,0.3 has no effect in --mode train"),
    (["--mode", "grid", "--logit-bias", "2"], "--logit-bias 2.0 has no effect in --mode grid"),
    (["--mode", "grid", "--grid", "g"], "--grid g has no effect in --mode grid"),
    (["--mode", "analytic", "--pilots", "3"], "--pilots 3 has no effect without --pick pilot"),
    (["--mode", "grid", "--num-samples", "4"], "--num-samples 4 has no effect without --search optuna"),
    # no test labels in a choice unless the oracle is asked for by name (issue 21)
    (["--mode", "grid", "--search", "optuna", "--val-fraction", "0"], "so --search optuna (TPE + ASHA) would choose on test"),
    (["--mode", "grid", "--val-fraction", "0"], "--selection val would choose on test labels"),
    (["--mode", "analytic", "--val-fraction", "0", "--pick", "pilot", "--selection", "test"], "--pick pilot keeps"),
    # one typing rule, and the nearest names for a typo
    (["--mode", "grid", "--epochs", "two"], "--epochs 'two': expected an integer"),
    (["--mode", "grid", "--dataset-args", "train_per_class"], "is not k=v"),
    (["--mode", "grid", "--lrz", "0.1"], "--lrz (did you mean --lr, --lrs"),
    (["--mode", "grid", "--dataset", "cifar1000"], "(did you mean cifar100, cifar10?)"),
])
def test_parse_args_rejects(argv, needle):
    with pytest.raises(CLIError) as err:
        parse_args(argv)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: grid\nlosses: [ce\n")
    with pytest.raises(CLIError, match="malformed YAML"):
        parse_args(["--config", str(bad)])
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("mode: grid\nlearning_rate_typo: 3\n")
    with pytest.raises(CLIError, match="learning_rate_typo"):
        parse_args(["--config", str(unknown)])
    for text, needle in (("mode: bogus\n", "mode 'bogus' is not one of train"),
                         ("bias_schedule: cosine\n", "bias_schedule 'cosine' is not one of auto, constant, weaning"),
                         ("calibration_reference: 50\n", "calibration_reference 50 is not one of 10, 100")):
        choice = tmp_path / "choice.yaml"
        choice.write_text(text)   # a config value is checked against the flag's choices, as on the command line
        with pytest.raises(CLIError, match=needle):
            parse_args(["--config", str(choice)])


def test_config_file_and_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mode: grid\nclasses: 7\nlosses: [ce, gce]\nlrs: [0.1, 0.2]\nseeds: 3\n")
    args = parse_args(["--config", str(cfg), "--seeds", "2"])
    assert args.mode == "grid" and args.num_classes == 7 and args.losses == ["ce", "gce"]
    assert args.lrs == [0.1, 0.2] and args.seeds == 2  # command line beats the file
    assert set(args.grids) == {"ce", "gce"}
    assert args.lr_protocol == "searched"
    shared = parse_args(["--config", str(cfg), "--lr", "0.05"])
    assert shared.lr_protocol == "shared" and shared.lrs == [0.05]   # a fixed LR is the shared protocol


def test_api_rejects_what_the_cli_rejects():
    from services import api

    with pytest.raises(api.RequestError, match="learning_rate"):
        api.grid(learning_rate=0.1)
    with pytest.raises(api.RequestError, match="asymmetric"):
        api.grid(noise="asymmetric", noise_rate=0.2, storage_path="/nonexistent/never-created")


def one_line_error(proc, needle):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr


def test_cli_unknown_mode_one_line(tmp_path):
    one_line_error(run_cli(["--mode", "bogus", "--storage-path", str(tmp_path)]), "bogus")


def test_cli_unreachable_address(tmp_path):
    port = free_port()
    proc = run_cli(["--mode", "grid", "--losses", "ce", "--address", f"127.0.0.1:{port}", "--storage-path", str(tmp_path)])
    one_line_error(proc, f"127.0.0.1:{port}")
    assert not any(tmp_path.iterdir())


def test_cli_storage_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(run_cli(["--mode", "grid", "--losses", "ce", "--storage-path", str(blocker / "x")]), "not writable")


def test_cli_refuses_existing_experiment(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "summary.json").write_text('{"runs": []}')
    proc = run_cli(["--mode", "grid", "--losses", "ce", "--name", "taken", "--storage-path", str(tmp_path)])
    one_line_error(proc, "already exists")
    assert (tmp_path / "taken" / "summary.json").read_text() == '{"runs": []}'


def test_cli_missing_data_root(tmp_path):
    proc = run_cli(["--mode", "grid", "--dataset", "cifar10", "--losses", "ce", "--data-root", str(tmp_path / "nodata"),
                    "--storage-path", str(tmp_path / "store")])
    one_line_error(proc, str(tmp_path / "nodata"))


def test_paper_config_row_runs_its_companion_invocation():
    """--row picks the invocation that produces one paper row (here Table 3's weaned genCE**)."""
    t3 = ["--config", "sweeps/configs/paper/table3_webvision.yaml", "--setting", "webvision", "--data-root", "/x"]
    args = parse_args(t3 + ["--row", "genCE**"])
    assert (args.mode, args.losses, args.bias_schedule, args.lrs) == ("grid", ["nfl_mae", "gce"], "weaning", [0.1])
    assert args.grids["gce"] == {"q": [0.7], "logit_bias": [6.09]}
    main = parse_args(t3)
    assert (main.mode, main.bias_schedule) == ("analytic", "auto")
    with pytest.raises(CLIError, match="unknown row 'bogus'; valid: NF-MAE"):
        parse_args(t3 + ["--row", "bogus"])


def test_address_auto_reads_the_address_file_ray_reads(tmp_path, monkeypatch):
    """`--address auto` finds a head by the file Ray's own `auto` reads: with RAY_TMPDIR=D (a head started
    in that environment, e.g. the README's dashboard recipe) that is D/ray/ray_current_cluster."""
    import socket

    from services.cluster import ClusterError, check_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    with pytest.raises(ClusterError, match=str(tmp_path / "ray" / "ray_current_cluster")):
        check_address("auto")
    (tmp_path / "ray").mkdir()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{listener.getsockname()[1]}\n")
        check_address("auto")   # reachable: no error
    with pytest.raises(ClusterError, match="unreachable"):   # the head named there is gone
        check_address("auto", timeout=0.5)


def test_trial_larger_than_the_embedded_ray_is_refused(monkeypatch):
    """A trial of more workers x CPUs than this machine has would wait forever on the embedded Ray (Ray
    Train times its worker group out and retries); on a cluster (--address) the cluster may have them."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cpus = os.cpu_count()
    with pytest.raises(CLIError) as err:
        parse_args(["--mode", "grid", "--num-workers", str(cpus + 1)])
    assert f"{cpus + 1} CPUs per trial" in str(err.value) and f"machine's {cpus}" in str(err.value)
    with pytest.raises(CLIError, match=f"{2 * cpus:g} CPUs per trial"):
        parse_args(["--mode", "train", "--losses", "mae", "--num-workers", "2", "--cpus-per-trial", str(cpus)])
    assert parse_args(["--mode", "grid", "--num-workers", str(cpus)]).num_workers == cpus
    assert parse_args(["--mode", "grid", "--num-workers", str(cpus + 1), "--address", "127.0.0.1:1"]).num_workers == cpus + 1


def test_the_oracle_by_name_may_select_on_test_labels():
    """--val-fraction 0 runs an Optuna or grid sweep only when the user names the oracle (--selection test)."""
    req = parse_args(["--mode", "grid", "--search", "optuna", "--val-fraction", "0", "--selection", "test"])
    assert (req.search, req.val_fraction, req.selection) == ("optuna", 0.0, "test")
    assert parse_args(["--mode", "train", "--losses", "ce", "--val-fraction", "0"]).val_fraction == 0.0   # no choice


def test_one_typing_rule_for_the_api_and_the_cli():
    """Lists: a list or a comma string; mappings: a dict or k=v,k=v; numbers: a number or its string."""
    from services.request import RequestError, SweepRequest

    typed = SweepRequest.from_options(mode="grid", losses="mae,gce", lrs="0.03,0.1", epochs="2",
                                      dataset_args="train_per_class=20,sigma=1.5", noise="symmetric",
                                      noise_rate="0.4").validated()
    native = SweepRequest.from_options(mode="grid", losses=["mae", "gce"], lrs=[0.03, 0.1], epochs=2,
                                       dataset_args={"train_per_class": 20, "sigma": 1.5}, noise="symmetric",
                                       noise_rate=0.4).validated()
    cli = parse_args(["--mode", "grid", "--losses", "mae,gce", "--lrs", "0.03,0.1", "--epochs", "2",
                      "--dataset-args", "train_per_class=20,sigma=1.5", "--noise", "symmetric", "--noise-rate", "0.4"])
    assert typed.record() == native.record() == cli.record()
    assert typed.lrs == [0.03, 0.1] and typed.dataset_kwargs == {"classes": 10, "train_per_class": 20, "sigma": 1.5}
    assert SweepRequest.from_options(mode="grid", lrs=0.1).validated().lrs == [0.1]   # one number: a list of one
    for options, needle in ((dict(lrs=object()), "--lrs <object object"), (dict(lrs="0.1,x"), "--lrs 'x'"),
                            (dict(dataset_args=[1, 2]), "--dataset-args [1, 2]: expected a mapping"),
                            (dict(epochs=2.5), "--epochs 2.5: expected an integer"),
                            (dict(losses=["mae", 3]), "expected a list of names"),
                            (dict(quiet="yes"), "--quiet 'yes': expected true or false")):
        with pytest.raises(RequestError) as err:
            SweepRequest.from_options(mode="grid", **options)
        assert needle in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(RequestError) as err:
        SweepRequest.from_options(mode="grid", lr_s=[0.1])
    assert str(err.value) == "unknown option 'lr_s' (did you mean lrs, lr?)"


def test_config_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    """`--config /abs/path/demo.yaml` from another folder reads the grid file it names next to it."""
    from conftest import REPO

    monkeypatch.chdir(tmp_path)
    req = parse_args(["--config", str(REPO / "sweeps" / "configs" / "demo.yaml")])
    assert req.grid_file == str(REPO / "sweeps" / "configs" / "demo-grid.yaml")
    assert req.grids == {"mae": {"logit_bias": [0.0, 2.0, 4.0]}, "gce": {"q": [0.3, 0.5, 0.7]}}
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "g.yaml").write_text("lrs: [0.5]\nlosses:\n  ce: {}\n")
    (tmp_path / "sub" / "c.yaml").write_text("mode: grid\nlosses: ce\ngrid_file: g.yaml\n")
    assert parse_args(["--config", "sub/c.yaml"]).lrs == [0.5]
    # a paper config names its grids from the repository root: still found from any folder
    t3 = parse_args(["--config", str(REPO / "sweeps/configs/paper/table3_webvision.yaml"), "--setting", "webvision",
                     "--data-root", "/x", "--row", "genCE**"])
    assert t3.grids["gce"] == {"q": [0.7], "logit_bias": [6.09]}


def test_help_shows_the_real_defaults():
    import re

    from robustloss_core.datasets import default_root
    from sweeps.run import build_parser

    text = " ".join(build_parser().format_help().split())
    assert os.path.abspath(default_root("cifar10")) in text   # the resolved data root, not "data"
    assert "(default: ce,mae,gce)" in text and "['ce'" not in text
    assert re.search(r"mlp1024 for [^;]*synthetic", text) and re.search(r"resnet32 for [^;]*fashionmnist", text)
    assert "measured epoch times: benchmarks/README.md" in text   # lab notes live there, not in --help
    assert "searched continuously" in text and "of any dataset" in text
