#!/usr/bin/env python
"""robustloss CLI: one run, a baseline sweep, the paper's analytic mode, and their comparison.

    python sweeps/run.py --mode analytic --dataset webvision          # ε and calibrated params for K=1000
    python sweeps/run.py --mode grid --dataset synthetic --classes 100 --losses mae,gce
    python sweeps/run.py --mode compare --grid NAME --analytic NAME
    python sweeps/run.py --config sweeps/configs/demo.yaml            # grid + analytic + compare

Every flag may also come from ``--config FILE.yaml`` (keys are flag names, ``-`` or ``_``);
flags on the command line override the file; a file the config names (``grid_file``) is read relative
to the config file (else to the repository root). Lists are comma strings (or YAML lists), mappings
``k=v,k=v`` (or YAML mappings). Bad input fails in one line before Ray starts.
Numbers marked (reconstructed) in --help are our inference where the paper's value was lost.
"""
from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from services.options import BY_NAME, OPTIONS, SPELLINGS
from services.request import RequestError, SweepRequest, check_value, coerce, read_yaml, unknown_names

CLIError = RequestError   # bad command-line or config-file input: one line, exit status 2
REPO = Path(__file__).resolve().parent.parent
CONFIG_PATHS = ("grid_file",)   # config keys naming a file: relative to the config file


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message, with the nearest flags for a typo
        if message.startswith("unrecognized arguments:"):
            typos = [a.split("=")[0] for a in message.split(":", 1)[1].split() if a.startswith("-")]
            flags = [o for o in self._option_string_actions if o.startswith("--")]
            hints = [f"{t} (did you mean {', '.join(near)}?)" for t in typos
                     if (near := difflib.get_close_matches(t, flags, n=3, cutoff=0.6))]
            if hints:
                message += "; " + "; ".join(hints)
        raise CLIError(message)


class _Help(argparse.RawDescriptionHelpFormatter):
    """Shows a flag's default once, and only where there is one (not None/False, not already in the text)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS, {}, [], "") and "default" not in text \
                and action.option_strings and not isinstance(action, argparse._StoreTrueAction):
            text += " (default: %(default)s)"
        return text


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("robustloss")
    except PackageNotFoundError:   # a checkout run as sweeps/run.py without pip install
        import tomllib

        with open(REPO / "pyproject.toml", "rb") as f:
            return tomllib.load(f)["project"]["version"]


GROUPS = {"main": None, "data": "data", "training": "training", "ray": "ray"}


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``services.options.OPTIONS``, one per row; values stay strings (typed by
    ``SweepRequest.from_options``)."""
    from robustloss_core.datasets import DATASETS
    from robustloss_core.losses import LOSSES

    p = _Parser(prog="robustloss", description=__doc__.split("\n")[1], formatter_class=_Help,
                epilog=f"datasets: {', '.join(sorted(DATASETS))}\nlosses: {', '.join(sorted(LOSSES))}")
    p.add_argument("--version", action="version", version=f"robustloss {version()}")
    groups = {g: (p if title is None else p.add_argument_group(title)) for g, title in GROUPS.items()}
    for o in OPTIONS:
        kw = {"dest": o.name, "help": o.help_text()}
        if o.kind == "bool":
            kw["action"] = "store_true"
        else:
            kw["default"] = ",".join(map(str, o.default)) if isinstance(o.default, list) else o.default
            if o.kind == "str" and o.what is None and o.allowed() is not None:
                kw["choices"] = o.allowed()
        groups[o.group].add_argument(o.cli, **kw)
    return p


def _load_config(path: str, parser: argparse.ArgumentParser, setting: str | None = None, row: str | None = None) -> dict:
    data = read_yaml(path, "--config") or {}
    if not isinstance(data, dict):
        raise CLIError(f"--config {path!r}: expected a mapping of flag: value, got {type(data).__name__}")
    if "base" in data and "settings" in data:  # a paper table: its base flags + one setting's overrides
        from services import paper

        try:
            cfg = paper.load_paper_config(path)
            if setting is None:
                raise CLIError(f"--config {path!r} is a paper table: add --setting, one of {', '.join(cfg.settings)}")
            data = paper.row_flags(cfg, setting, row) if row else paper.setting_flags(cfg, setting)
        except paper.PaperConfigError as exc:
            raise CLIError(str(exc).splitlines()[0]) from None
        except ValueError as exc:
            raise CLIError(str(exc).splitlines()[0]) from None
    keys = sorted(set(SPELLINGS) - {"config", "setting", "row"})
    out = {}
    for key, value in data.items():
        name = SPELLINGS.get(str(key).replace("-", "_"))
        if name not in keys:
            raise CLIError(f"--config {path!r}: {unknown_names([key], keys, what='key')}")
        if BY_NAME[name].what is None and BY_NAME[name].allowed() is not None:   # checked as on the command line
            check_value(name, coerce(name, value, BY_NAME[name].default), shown=f"--config {path!r}: {key}")
        if name in CONFIG_PATHS and isinstance(value, str):
            value = config_path(value, path)
        out[name] = value   # lists, mappings and numbers are typed with the command line's (SweepRequest.from_options)
    return out


def config_path(value: str, config: str) -> str:
    """A file named in a config: relative to the config file's folder; where no such file is there, relative
    to the repository root (the shipped paper configs name ``sweeps/configs/paper/grids/...``)."""
    raw = os.path.expanduser(value)
    if os.path.isabs(raw):
        return raw
    here = os.path.join(os.path.dirname(os.path.abspath(config)), raw)
    if os.path.exists(here) or not (REPO / raw).exists():
        return here
    return str(REPO / raw)


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The options set on the command line (not left at their defaults)."""
    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def parse_args(argv: list[str] | None = None) -> SweepRequest:
    """Parse flags (and ``--config``) into a validated ``SweepRequest``, without starting Ray or changing
    storage. With ``--resume`` the request is the experiment's stored one (``services.resume``): read from
    the storage, compared with the flags given, refused where they would change its trials."""
    from services import resume

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    first = parser.parse_args(argv)
    given = given_options(parser, argv) - {"config", "setting", "row"}
    if first.config:
        config = _load_config(first.config, parser, first.setting, first.row)
        given |= set(config)
        parser.set_defaults(**config)
        args = parser.parse_args(argv)
    else:
        args = first
    options = {k: v for k, v in vars(args).items() if k not in ("help",)}
    request = SweepRequest.from_options(given=given, **options)
    return resume.continued(request) if request.resume else request.validated()


def main(argv: list[str] | None = None) -> int:
    from services import app, plan, quiet, timeline

    timeline.mark("main")
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    quiet.quiet_ray(verbose)   # before Ray is imported by anything: its start-up lines come from the driver's loggers
    if not argv:   # a bare `robustloss` starts nothing: it says how to
        print(app.start_text())
        return 0
    try:
        if argv[0] == "ls":
            return app.list_experiments(argv[1:])
        request = parse_args(argv)
        if request.dry_run:
            return plan.dry_run(request)
        with quiet.quiet_exit(verbose):
            return app.run(request)
    except RequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except app.UserError as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
