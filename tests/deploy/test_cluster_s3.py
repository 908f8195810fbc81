"""A two-node Ray cluster on this machine runs a baseline search whose trials land on both nodes, with
results in an S3-compatible object store (moto server on loopback) given as `--storage-path s3://...`;
`--mode compare` reads them back from there. The baseline is `--search optuna` with its study in a
database (`--optuna-storage sqlite:///...`): Optuna's journal file cannot live in an object store."""
import contextlib
import json
from pathlib import Path

import pytest

from conftest import run_cli

pytestmark = pytest.mark.ray

TINY = ["--dataset", "synthetic", "--classes", "10", "--dataset-args", "train_per_class=20,test_per_class=10",
        "--batch-size", "32", "--epochs", "2", "--quiet"]


@contextlib.contextmanager
def ray_address_file_kept(path=Path("/tmp/ray/ray_current_cluster")):
    """ray.cluster_utils.Cluster writes its head's address to Ray's default address file, which every
    `--address auto` and `ray status` on the machine reads: put back what was there (someone else's
    `ray start`) once the test cluster is gone."""
    before = path.read_bytes() if path.exists() else None
    try:
        yield
    finally:
        if before is not None:
            path.write_bytes(before)
        elif path.exists():
            path.unlink()


def test_two_node_sweep_to_s3_and_compare(tmp_path, s3_server):
    import boto3
    from ray.cluster_utils import Cluster

    endpoint, bucket = s3_server
    uri = f"s3://{bucket}/sweeps?endpoint_override={endpoint}&scheme=http"
    grid = tmp_path / "grid.yaml"
    grid.write_text("lrs: [0.02, 0.05]\nlosses:\n  gce:\n    q: [0.5, 0.7]\n")
    study_url = f"sqlite:///{tmp_path / 'optuna.db'}"
    with ray_address_file_kept():
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        try:
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            common = ["--address", cluster.address, "--storage-path", uri, "--losses", "gce", *TINY]
            g = run_cli(["--mode", "grid", "--search", "optuna", "--num-samples", "4", "--optuna-storage", study_url,
                         "--name", "g", "--grid-file", str(grid), *common])
            assert g.returncode == 0, g.stdout[-3000:] + g.stderr[-3000:]
            a = run_cli(["--mode", "analytic", "--name", "a", "--seeds", "2", "--lrs", "0.02,0.05", *common])
            assert a.returncode == 0, a.stdout[-3000:] + a.stderr[-3000:]
        finally:
            cluster.shutdown()   # this cluster's processes only (its Node objects know their pids)

    s3 = boto3.client("s3", endpoint_url=f"http://{endpoint}")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="sweeps/")
            for o in page.get("Contents", [])]
    assert "sweeps/g/summary.json" in keys and "sweeps/a/calibration.json" in keys
    assert sum(k.startswith("sweeps/g/") and k.endswith("/result.json") for k in keys) == 4
    summary = json.loads(s3.get_object(Bucket=bucket, Key="sweeps/g/summary.json")["Body"].read())
    assert len(summary["runs"]) == 4 and summary["search"] == "optuna"
    assert all(r["status"] in ("ok", "stopped") and r["test_top1"] is not None for r in summary["runs"])
    assert len({r["node_id"] for r in summary["runs"]}) == 2  # trials ran on both nodes
    import optuna

    study = optuna.load_study(study_name="g", storage=study_url)   # the study is in the database, by name
    assert len(study.trials) == 4 and all({"q", "lr"} <= set(t.params) for t in study.trials)
    assert sorted(round(t.params["q"], 9) for t in study.trials) == sorted(round(r["params"]["q"], 9) for r in summary["runs"])
    assert not [k for k in keys if k.endswith("optuna.journal")]

    out = tmp_path / "cmp.json"
    c = run_cli(["--mode", "compare", "--grid", "g", "--analytic", "a", "--storage-path", uri, "--json-out", str(out)])
    assert c.returncode == 0, c.stdout[-3000:] + c.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["mode"] for r in rows] == ["grid", "analytic"] and rows[0]["trials"] == 4 and rows[1]["trials"] == 4
    assert all(r["selection"] == "val" for r in rows)   # 2 LRs x 2 seeds: the analytic side searched the grid's LRs
    names = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="sweeps/compare-g-vs-a/")["Contents"]}
    assert {f"sweeps/compare-g-vs-a/compare.{e}" for e in ("md", "csv", "png")} <= names
