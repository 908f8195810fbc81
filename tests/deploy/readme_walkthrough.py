"""Run the project README's commands as shown, in order, in a clean clone, and report each one's exit
status and time (issue 13: "every README command works as shown, in order").

Not part of pytest: it takes about half an hour on the 2-core machine (the README's own sweeps). The
parser test (tests/deploy/test_manifests.py) checks the same commands' flags in CI, in seconds.

    python tests/deploy/readme_walkthrough.py --clone /work/walk --out benchmarks/results/readme_walkthrough.md

What differs from a user at a terminal, and nothing else:
- ``ROBUSTLOSS_STORAGE`` points at a fresh folder of the walkthrough (the README's default is
  ``~/robustloss_results``, where an earlier run's names would be refused as existing);
- ``.venv/bin/python -m pytest`` (the whole suite) is skipped: CI runs it;
- commands with a placeholder (``<storage>``, ``<name>``) get the walkthrough's storage and the
  experiment the README made just before them (``g1``).
It runs the README's code blocks; commands quoted in its prose are the servers one opens by hand
(``tensorboard --logdir``, ``mlflow ui``, ``optuna-dashboard``) and are not run.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(bash|python)\n(.*?)^```", flags=re.S | re.M)
SKIP = {".venv/bin/python -m pytest": "the whole suite: CI runs it"}


def blocks(readme: str) -> list[tuple[str, str]]:
    """(language, text) of every bash and python code block, in order."""
    return FENCE.findall(readme)


def commands(lang: str, text: str) -> list[str]:
    """A bash block's logical lines (comments dropped), or a python block as one command."""
    if lang == "python":
        return [text]
    joined = re.sub(r"\\\n", " ", text)
    return [ln for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def script(steps: list[tuple[int, str, str]], storage: str) -> str:
    """One bash script: every step in one shell (so `$!` and variables carry over, as in a terminal),
    with a marker before and the exit status after each."""
    out = ["cd \"$WALK_CLONE\"", f"export ROBUSTLOSS_STORAGE={storage}"]
    for i, lang, cmd in steps:
        cmd = cmd.replace("<storage>", storage).replace("<name>", "g1")
        out.append(f"echo '::step {i}' $(date +%s.%N)")
        if lang == "python":
            out += [".venv/bin/python - <<'PYEOF'", cmd.rstrip("\n"), "PYEOF"]
        else:
            out.append(cmd)
        out.append(f"echo '::rc {i}' $? $(date +%s.%N)")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clone", required=True, help="where to clone the repository (must not exist)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "readme_walkthrough.md"))
    ap.add_argument("--timeout", type=float, default=5400)
    args = ap.parse_args(argv)
    clone = Path(args.clone)
    if clone.exists():
        print(f"error: --clone {clone} exists; give a new folder", file=sys.stderr)
        return 2
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    storage = tempfile.mkdtemp(prefix="rl-walk-")
    steps, skipped = [], []
    for lang, text in blocks((clone / "README.md").read_text()):
        for cmd in commands(lang, text):
            bare = cmd.split("#")[0].strip()
            if bare in SKIP:
                skipped.append((cmd, SKIP[bare]))
                continue
            steps.append((len(steps), lang, cmd))
    log = Path(storage) / "walkthrough.log"
    t0 = time.time()
    with log.open("w") as sink:
        proc = subprocess.run(["bash", "-c", script(steps, storage)], stdout=sink, stderr=subprocess.STDOUT,
                              env={**__import__("os").environ, "WALK_CLONE": str(clone)}, timeout=args.timeout)
    text = log.read_text()
    starts = {int(m[1]): float(m[2]) for m in re.finditer(r"^::step (\d+) (\S+)$", text, flags=re.M)}
    ends = {int(m[1]): (int(m[2]), float(m[3])) for m in re.finditer(r"^::rc (\d+) (\d+) (\S+)$", text, flags=re.M)}
    rows = []
    for i, lang, cmd in steps:
        rc, end = ends.get(i, (None, None))
        secs = f"{end - starts[i]:.0f}" if end is not None and i in starts else "-"
        first = cmd.strip().splitlines()[0] + (" …" if lang == "python" else "")
        rows.append(f"| {i + 1} | `{first[:150]}` | {rc if rc is not None else 'not reached'} | {secs} |")
    failed = [r for r in rows if not r.split("|")[3].strip() == "0"]
    lines = [f"# The README's commands, run in order ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t0))})", "",
             f"`python tests/deploy/readme_walkthrough.py` on a clean clone of {commit}; "
             f"{len(steps)} commands, {len(failed)} failed, {time.time() - t0:.0f} s in all "
             f"(bash exit {proc.returncode}). Machine: `{subprocess.run(['uname', '-srm'], capture_output=True, text=True).stdout.strip()}`, "
             f"{__import__('os').cpu_count()} cores. Storage: a fresh `ROBUSTLOSS_STORAGE`.", "",
             "| # | command | exit | s |", "|---|---|---|---|", *rows, ""]
    lines += [f"Skipped: `{c}` ({why})." for c, why in skipped]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"log: {log}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
