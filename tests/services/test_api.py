"""The Python API from a script outside the repository: api.grid, then api.load_runs as a DataFrame;
MLflow's local store and W&B's offline run folder each get one run per trial (no network)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

pytestmark = pytest.mark.ray


def test_api_grid_then_load_runs_with_trackers(tmp_path):
    store = tmp_path / "store"
    script = tmp_path / "notebook.py"
    script.write_text(textwrap.dedent(f"""
        import json, os
        from services import api
        before = dict(os.environ)
        # the CLI's typing: comma strings for lists, k=v,k=v for mappings, a number's string for a number
        g = api.grid(dataset="synthetic", classes="10", dataset_args="train_per_class=20,test_per_class=10",
                     losses="mae,gce", lrs="0.1", epochs=1, batch_size=32, storage_path={str(store)!r}, name="g",
                     grid_file={str(tmp_path / "grid.yaml")!r}, quiet=True, callbacks=["mlflow", "wandb"])
        df = api.load_runs({str(store)!r}, "g")
        changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
        print("RESULT " + json.dumps({{"columns": list(df.columns), "n": len(df), "name": g.name,
                                      "rows": len(g.rows), "env_changed": changed,
                                      "q": sorted(df["q"].dropna().tolist())}}))
    """))
    (tmp_path / "grid.yaml").write_text("lrs: [0.1]\nlosses:\n  mae:\n    logit_bias: [0.0, 2.0]\n  gce:\n    q: [0.5, 0.7]\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[7:])
    assert res["n"] == 4 and res["rows"] == 4 and res["name"] == "g"
    assert {"loss", "lr", "logit_bias", "q", "seed", "test_top1", "val_top1", "best_epoch"} <= set(res["columns"])
    assert res["q"] == [0.5, 0.7]
    # the sweep restored what it set; what remains is set by Ray's and TensorBoardX's own code (ray.init:
    # RAY_*, PYTHONBREAKPOINT; importing tensorboardX: CRC32C_SW_MODE), never by ours
    theirs = ("PYTHONBREAKPOINT", "CRC32C_SW_MODE")
    assert [k for k in res["env_changed"] if not k.startswith("RAY_") and k not in theirs] == [], res["env_changed"]

    import mlflow
    mlflow.set_tracking_uri("sqlite:///" + str(store / "g" / "mlflow.db"))
    runs = mlflow.search_runs(experiment_names=["g"])
    assert len(runs) == 4 and sorted(runs["params.lr"].astype(float)) == [0.1] * 4
    assert sorted(runs["params.loss"]) == ["gce", "gce", "mae", "mae"]
    offline = list((store / "g" / "wandb").glob("offline-run-*"))
    assert len(offline) == 4 and all(list(d.glob("*.wandb")) for d in offline)
