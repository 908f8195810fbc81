"""No collateral damage (issue 13): nothing in CI, the tests or deploy/ stops a Ray it did not start.

Ray's stop command and killing processes by name act on every matching process of the machine:
other users' clusters, other jobs' embedded Rays. CI and the tests start their own Ray and stop it by pid; the
launcher configs may reset Ray only inside each node's own container. Pure file checks.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from services import metrics  # noqa: E402

# Ray's stop in a shell line or as a subprocess list (the ray executable, then the word), and the two
# kill-by-name tools; built from pieces so that this file does not match itself
MACHINE_WIDE = [re.compile(r"\bray\W{1,4}" + "stop" + r"\b"), re.compile(r"\bp" + r"kill\b"), re.compile(r"\bkill" + r"all\b"),
                re.compile(r"""(ray\w*|["']ray["'])\s*,\s*["']""" + "stop" + r"""["']""")]
TEXT_SUFFIXES = {"", ".py", ".sh", ".yaml", ".yml", ".md", ".cfg", ".toml", ".txt"}


def code_lines(path: Path):
    """(line number, line) of a file's non-comment lines."""
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.lstrip().startswith("#"):
            yield i, line


def machine_wide_stops(path: Path) -> list[str]:
    return [f"{path.relative_to(REPO)}:{i}: {line.strip()}" for i, line in code_lines(path)
            if any(p.search(line) for p in MACHINE_WIDE)]


def scanned(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES
                  and "__pycache__" not in p.parts)


def test_the_scan_finds_what_it_looks_for(tmp_path):
    """The patterns catch the real forms (shell, a subprocess list) and skip comments."""
    f = tmp_path / "x.sh"
    stop = "ray " + "stop"
    f.write_text(f"# {stop} would stop every Ray\n.venv/bin/{stop} --force || true\n")
    g = tmp_path / "y.py"
    g.write_text(f'subprocess.run([ray_bin, "{stop.split()[1]}"])\nos.system("p{"kill"} -f raylet")\n')
    found = [line for p in (f, g) for i, line in code_lines(p) if any(m.search(line) for m in MACHINE_WIDE)]
    assert found == [f".venv/bin/{stop} --force || true", g.read_text().splitlines()[0], g.read_text().splitlines()[1]]


@pytest.mark.parametrize("folder", [".ci", "tests"])
def test_ci_and_tests_stop_no_ray_they_did_not_start(folder):
    files = scanned(folder)
    assert files
    offenders = [hit for p in files for hit in machine_wide_stops(p)]
    assert not offenders, "machine-wide Ray stops (stop your own Ray by pid instead):\n" + "\n".join(offenders)


def test_deploy_commands_stop_no_foreign_ray():
    """In deploy/, a Ray stop may only appear as a launcher command run inside the node's own Ray
    container (the launcher runs *_start_ray_commands in the container when `docker` is configured),
    and that container must not share the host's PID namespace. Documentation code blocks run none."""
    launcher_keys = ("head_start_ray_commands", "worker_start_ray_commands")
    for path in sorted((REPO / "deploy").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            text = yaml.safe_dump(doc)
            stops_outside = {k: v for k, v in doc.items() if k not in launcher_keys and any(p.search(yaml.safe_dump(v)) for p in MACHINE_WIDE)}
            assert not stops_outside, f"{path.name}: {list(stops_outside)}"
            if any(p.search(text) for p in MACHINE_WIDE):
                docker = doc.get("docker") or {}
                assert docker.get("image") and docker.get("container_name"), f"{path.name}: Ray stop outside a container"
                opts = " ".join(docker.get("run_options", []) + docker.get("head_run_options", []) + docker.get("worker_run_options", []))
                assert "--pid=host" not in opts and "--pid host" not in opts, path.name
    for path in sorted((REPO / "deploy").rglob("*.md")):
        blocks = re.findall(r"^```[^\n]*\n(.*?)^```", path.read_text(), flags=re.S | re.M)
        hits = [line for b in blocks for line in b.splitlines() if not line.lstrip().startswith("#")
                and any(p.search(line) for p in MACHINE_WIDE)]
        assert not hits, f"{path.relative_to(REPO)}: {hits}"


def test_grafana_dashboard_queries_every_exported_metric():
    dash = json.loads((REPO / "deploy" / "grafana" / "robustloss-trials.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    names = {m for e in exprs for m in re.findall(r"\b(ray_robustloss_\w+)\{", e)}
    assert names == {metrics.exported_name(k) for k in metrics.GAUGES}
    for e in exprs:   # one line per trial, whatever worker reported it
        by = re.search(r"by \(([^)]*)\)", e)[1]
        assert [s.strip() for s in by.split(",")] == list(metrics.TAG_KEYS), e
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert metrics.exported_name("epoch") in variables["experiment"]["definition"]
    assert all('experiment=~"$experiment"' in e for e in exprs)
