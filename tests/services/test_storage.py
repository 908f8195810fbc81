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


# ------------------------------------------------------------------ default storage, user paths (issue 13)
import json  # noqa: E402
import os  # noqa: E402

from services import storage as st  # noqa: E402


def fake_ray_package(root):
    """The folder Ray unpacks a `ray job submit --working-dir` package to, and starts the driver in."""
    pkg = root / "session_2026-01-01_00-00-00_000000_1" / "runtime_resources" / "working_dir_files" / "_ray_pkg_0a1b2c"
    pkg.mkdir(parents=True)
    return pkg


def test_default_storage_is_absolute_outside_the_working_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(st.STORAGE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    seen = set()
    for cwd in (tmp_path / "a", fake_ray_package(tmp_path)):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        path = st.default_storage_path()
        assert os.path.isabs(path) and os.path.commonpath([path, str(cwd)]) != str(cwd)
        assert os.path.commonpath([path, str(tmp_path / "home")]) == str(tmp_path / "home")
        assert st.resolve_user_path(None) == path   # accepted even inside Ray's package
        seen.add(path)
    assert len(seen) == 1   # the same folder wherever the CLI starts
    monkeypatch.setenv(st.STORAGE_ENV, str(tmp_path / "shared"))
    assert st.default_storage_path() == str(tmp_path / "shared") == st.resolve_user_path(None)


def test_relative_path_is_resolved_against_the_launch_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert st.resolve_user_path("res/x") == str(tmp_path / "res" / "x")
    assert st.resolve_user_path("res", launch_dir=str(tmp_path / "elsewhere")) == str(tmp_path / "elsewhere" / "res")
    assert st.resolve_user_path("s3://bucket/p?endpoint_override=h:1&scheme=http") == "s3://bucket/p?endpoint_override=h:1&scheme=http"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert st.resolve_user_path("~/r") == str(tmp_path / "home" / "r")
    assert st.ray_package_dir() is None


def test_relative_path_inside_a_ray_job_package_is_refused(tmp_path, monkeypatch):
    pkg = fake_ray_package(tmp_path)
    (pkg / "sweeps").mkdir()
    monkeypatch.chdir(pkg / "sweeps")   # anywhere inside the package
    assert st.ray_package_dir() == str(pkg)
    with pytest.raises(StorageError) as err:
        st.resolve_user_path("results")
    msg = str(err.value)
    assert "\n" not in msg and str(pkg) in msg and st.STORAGE_ENV in msg and "absolute" in msg
    with pytest.raises(StorageError, match="inside Ray's temporary package"):
        st.resolve_user_path(str(pkg / "results"))
    assert st.resolve_user_path(str(tmp_path / "durable")) == str(tmp_path / "durable")
    monkeypatch.setenv(st.STORAGE_ENV, "relative-too")
    with pytest.raises(StorageError, match="relative-too"):
        st.resolve_user_path(None)


def test_ray_job_config_marks_a_working_dir_job(tmp_path, monkeypatch):
    """A submitted driver whose working dir was unpacked somewhere unusual is still recognised, from
    the job config Ray's supervisor passes it."""
    monkeypatch.chdir(tmp_path)
    env = {st.RAY_JOB_CONFIG_ENV: json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_0a1b2c.zip"}, "metadata": {}})}
    assert st.ray_package_dir(environ=env) == str(tmp_path)
    assert st.ray_package_dir(environ={st.RAY_JOB_CONFIG_ENV: json.dumps({"runtime_env": {}})}) is None
    monkeypatch.setenv(st.RAY_JOB_CONFIG_ENV, env[st.RAY_JOB_CONFIG_ENV])
    with pytest.raises(StorageError, match="relative"):
        st.resolve_user_path("results")


def write_mounts(path, rows):
    path.write_text("".join(f"dev{i} {point} {fstype} rw 0 0\n" for i, (point, fstype) in enumerate(rows)))
    return str(path)


def test_mount_type_longest_prefix_and_escapes(tmp_path):
    spaced = tmp_path / "my store"
    spaced.mkdir()
    mounts = write_mounts(tmp_path / "mounts", [("/", "ext4"), (str(tmp_path).replace(" ", "\\040"), "tmpfs"),
                                                (str(spaced).replace(" ", "\\040"), "nfs4")])
    assert st.mount_type(str(spaced / "not" / "yet"), mounts) == "nfs4"   # nearest existing ancestor
    assert st.mount_type(str(tmp_path / "other"), mounts) == "tmpfs"
    assert st.mount_type(str(tmp_path) + "x", mounts) == "ext4"            # a sibling with a common prefix
    assert st.mount_type(str(tmp_path), str(tmp_path / "missing")) == ""
    assert st.mount_type("/", "/proc/mounts")  # this machine's root has a type


def test_check_shared_refuses_node_local_on_multi_node(tmp_path):
    nfs, fuse = tmp_path / "nfs", tmp_path / "fuse"
    nfs.mkdir()
    fuse.mkdir()
    mounts = write_mounts(tmp_path / "mounts", [("/", "ext4"), (str(nfs), "nfs4"), (str(fuse), "fuse.gcsfuse")])
    local = resolve_storage(tmp_path / "local")
    st.check_shared(local, 1, mounts=mounts)                  # one node: anything goes
    with pytest.raises(StorageError) as err:
        st.check_shared(local, 3, mounts=mounts)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "local") in msg and "3 nodes" in msg and "ext4" in msg
    assert "NFS" in msg and "s3://" in msg and "gs://" in msg and "--storage-shared" in msg
    st.check_shared(local, 3, shared=True, mounts=mounts)     # the user insists: a mount we cannot see
    st.check_shared(resolve_storage(nfs / "results"), 3, mounts=mounts)
    st.check_shared(resolve_storage(fuse / "r"), 3, mounts=mounts)


def test_check_shared_accepts_object_stores(s3_server):
    endpoint, bucket = s3_server
    st.check_shared(resolve_storage(f"s3://{bucket}/p?endpoint_override={endpoint}&scheme=http"), 8)
