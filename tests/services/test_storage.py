"""Storage: local folders and an S3-compatible object store on loopback, same API."""
import pytest

from services.storage import StorageError, resolve_storage


def test_local_roundtrip_and_refuse_overwrite(tmp_path):
    storage = resolve_storage(tmp_path / "store")
    storage.check_writable()
    storage.write_json({"a": 1}, "exp", "x.json")
    assert storage.read_json("exp", "x.json") == {"a": 1}
    assert storage.exists("exp") and not storage.exists("other")
    with pytest.raises(StorageError, match="refusing to overwrite"):
        storage.write_json({"a": 2}, "exp", "x.json", overwrite=False)
    assert storage.read_json("exp", "x.json") == {"a": 1}
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(".robustloss-probe")]


def test_not_writable_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError) as err:
        resolve_storage(blocker / "sub").check_writable()
    msg = str(err.value)
    assert "\n" not in msg and str(blocker / "sub") in msg and "not writable" in msg


def test_unsupported_scheme():
    with pytest.raises(StorageError, match="ftp"):
        resolve_storage("ftp://host/x")


def test_s3_endpoint_override_roundtrip(s3_server):
    endpoint, bucket = s3_server
    storage = resolve_storage(f"s3://{bucket}/prefix?endpoint_override={endpoint}&scheme=http")
    assert storage.root == f"{bucket}/prefix" and not storage.is_local
    storage.check_writable()
    storage.write_json({"k": [1, 2]}, "exp", "summary.json")
    assert storage.read_json("exp", "summary.json") == {"k": [1, 2]}
    assert storage.display("exp") == f"s3://{bucket}/prefix/exp"
    import boto3

    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=f"http://{endpoint}").list_objects_v2(Bucket=bucket)["Contents"]]
    assert "prefix/exp/summary.json" in keys
