"""Deployment recipes under deploy/: they parse, agree with the project's versions and with each
other, every `sweeps/run.py` command in them is accepted by the CLI's own parser, and they hold no
secrets. Pure file checks (no Docker, Kubernetes, Ray runtime or network): a few seconds."""
from __future__ import annotations

import importlib.metadata
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import ray  # noqa: E402  (the installed Ray: the image, RayCluster and launcher must match it)

RAY_VERSION = ray.__version__
PY_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"

EXPECTED_FILES = [
    "README.md",
    "docker/Dockerfile",
    "docker/Dockerfile.dockerignore",
    "kuberay/raycluster.yaml",
    "kuberay/storage-nfs.yaml",
    "kuberay/rayjob-analytic.yaml",
    "kuberay/rayjob-grid.yaml",
    "kuberay/rayjob-compare.yaml",
    "cluster-launcher/gpu-cluster.yaml",
    "cluster-launcher/onprem-cluster.yaml",
    "cluster-launcher/onprem.md",
    "grafana/robustloss-trials.json",
]
LAUNCHER_CONFIGS = ["cluster-launcher/gpu-cluster.yaml", "cluster-launcher/onprem-cluster.yaml"]
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
TEXT_FILES = sorted(p for p in DEPLOY.rglob("*") if p.is_file())
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ";;", "(", ")", ">", ">>", "<", "<<", "|&", ">&", "<&"}


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def load_docs(path: Path) -> list:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s_docs() -> list[tuple[Path, dict]]:
    return [(p, d) for p in YAML_FILES for d in load_docs(p) if isinstance(d, dict) and "apiVersion" in d]


def the(kind: str) -> list[dict]:
    return [d for _, d in k8s_docs() if d["kind"] == kind]


# ----------------------------------------------------------------------- extracting CLI invocations
def split_shell(command: str) -> list[str]:
    """Shell words of ``command`` with unquoted control operators as separate tokens, comments dropped."""
    lex = shlex.shlex(command, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    return list(lex)


def run_py_argvs(command: str) -> list[list[str]]:
    """The argument lists of every ``sweeps/run.py`` invocation in a shell command line."""
    if "sweeps/run.py" not in command:
        return []
    tokens = split_shell(command)
    found = []
    for i, tok in enumerate(tokens):
        if tok == "sweeps/run.py" or tok.endswith("/sweeps/run.py"):
            argv = []
            for t in tokens[i + 1:]:
                if t in SHELL_OPERATORS or (t and set(t) <= set("();<>|&")):
                    # an unquoted '&' inside a URI (endpoint_override=...&scheme=...) ends up here
                    assert t != "&", f"unquoted '&' in a sweeps/run.py command (quote the URI): {command!r}"
                    break
                argv.append(t)
            found.append(argv)
    assert found, f"'sweeps/run.py' mentioned but not invoked as a command word: {command!r}"
    return found


def strings_in(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from strings_in(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings_in(v)


def logical_lines(text: str) -> list[str]:
    """Shell text -> commands, joining backslash-continued lines."""
    return [line for line in re.sub(r"\\\n", " ", text).splitlines() if line.strip()]


def markdown_code(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def all_invocations() -> list[tuple[str, list[str] | str]]:
    """(source file, argv) of every sweeps/run.py command under deploy/; (source, error text) where a
    file cannot be read or a command is malformed (reported by the test, not at collection)."""
    out = []

    def add(source: str, commands) -> None:
        def error(exc: Exception) -> tuple[str, str]:
            return source, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"

        try:
            found = commands()
        except yaml.YAMLError as exc:
            out.append(error(exc))
            return
        for command in found:
            try:
                out.extend((source, argv) for argv in run_py_argvs(command))
            except (AssertionError, ValueError) as exc:  # ValueError: unbalanced shell quotes
                out.append(error(exc))

    for path in YAML_FILES:  # every string value: RayJob entrypoints, launcher commands, container args
        add(rel(path), lambda path=path: [s for doc in load_docs(path) for s in strings_in(doc)])
    for path in [REPO / "README.md", *sorted(DEPLOY.rglob("*.md"))]:   # the project README's commands too
        add(rel(path), lambda path=path: [line for block in markdown_code(path.read_text()) for line in logical_lines(block)])
    for path in sorted(DEPLOY.rglob("*.sh")):
        add(rel(path), lambda path=path: logical_lines(path.read_text()))
    return out


INVOCATIONS = all_invocations()


def flag(argv: list[str], name: str, default=None):
    """Value of ``--name VALUE`` / ``--name=VALUE`` in argv (True for a bare switch)."""
    for i, tok in enumerate(argv):
        if tok == name:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                return argv[i + 1]
            return True
        if tok.startswith(name + "="):
            return tok.split("=", 1)[1]
    return default


@pytest.fixture(scope="module")
def parse_args():
    from sweeps.run import CLIError, parse_args

    return parse_args, CLIError


# --------------------------------------------------------------------------------------- the tests
def test_recipes_exist():
    missing = [f for f in EXPECTED_FILES if not (DEPLOY / f).is_file()]
    assert not missing, f"missing deployment files: {missing}"


@pytest.mark.parametrize("path", YAML_FILES, ids=rel)
def test_yaml_parses(path):
    docs = load_docs(path)
    assert docs, f"{rel(path)} holds no YAML document"
    for doc in docs:
        assert isinstance(doc, dict), f"{rel(path)}: a document is {type(doc).__name__}, not a mapping"
        if "apiVersion" in doc:
            assert doc.get("kind") and doc.get("metadata", {}).get("name"), f"{rel(path)}: Kubernetes object without kind/name"


def test_cli_invocations_found():
    files = {f for f, _ in INVOCATIONS}
    for must in ("kuberay/rayjob-analytic.yaml", "kuberay/rayjob-grid.yaml", "kuberay/rayjob-compare.yaml", "README.md"):
        assert f"deploy/{must}" in files, f"no sweeps/run.py command found in deploy/{must}"
    assert sum(f == "README.md" for f, _ in INVOCATIONS) >= 6   # the project README's own commands
    assert len(INVOCATIONS) >= 8


@pytest.mark.parametrize("source,argv", INVOCATIONS, ids=[f"{s}#{i}" for i, (s, _) in enumerate(INVOCATIONS)])
def test_cli_invocation_is_valid(parse_args, source, argv):
    if isinstance(argv, str):
        pytest.fail(f"{source}: {argv}")
    parse, CLIError = parse_args
    if argv[:1] == ["ls"] or argv == ["--version"]:   # not a sweep: the command runs (no Ray, no storage written)
        from sweeps.run import main

        try:
            code = main(argv)
        except SystemExit as exc:   # argparse's --version
            code = exc.code
        assert code == 0, f"{source}: sweeps/run.py {' '.join(argv)} failed"
        return
    if "--resume" in argv:   # a resume reads the stored request from --storage-path (a remote bucket here)
        from services.options import MAY_CHANGE_ON_RESUME
        from services.search import STRATEGIES
        from sweeps.run import build_parser, given_options

        given = given_options(build_parser(), argv)
        searches_allow = set().union(*(s.resume_may_change for s in STRATEGIES.values()))   # e.g. a budget
        fixed = given - {"resume", "name", "storage_path"} - MAY_CHANGE_ON_RESUME - searches_allow
        assert not fixed, f"{source}: a resume may not change {sorted(fixed)}"
        if "mode" not in given and "config" not in given:
            return   # a bare resume: its flags are checked; the rest is the stored request
        argv = [a for a in argv if a != "--resume"]   # check the invocation as its first submission instead
    try:
        args = parse(argv)
    except CLIError as exc:
        pytest.fail(f"{source}: sweeps/run.py {' '.join(argv)}\n  -> CLIError: {exc}")
    except SystemExit as exc:  # argparse --help/--version or a parser that exits
        pytest.fail(f"{source}: sweeps/run.py {' '.join(argv)} exited ({exc.code})")
    if args.mode in ("train", "grid", "analytic") and flag(argv, "--address") not in (None, "auto") and "onprem" not in source:
        pytest.fail(f"{source}: cluster runs should use --address auto (got {flag(argv, '--address')})")


def _raycluster() -> dict:
    clusters = the("RayCluster")
    assert len(clusters) == 1, f"expected one RayCluster under deploy/, found {len(clusters)}"
    return clusters[0]


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _gpu_groups(rc: dict) -> list[dict]:
    out = []
    for g in rc["spec"].get("workerGroupSpecs", []):
        res = _containers(g["template"])[0].get("resources", {})
        if "nvidia.com/gpu" in res.get("limits", {}):
            out.append(g)
    return out


def test_raycluster_head_and_autoscaling_gpu_group():
    rc = _raycluster()
    spec = rc["spec"]
    assert spec["rayVersion"] == RAY_VERSION, f"rayVersion {spec['rayVersion']} != installed Ray {RAY_VERSION}"
    assert spec.get("enableInTreeAutoscaling") is True
    head = spec["headGroupSpec"]
    head_c = _containers(head["template"])[0]
    assert head_c["image"]
    assert "nvidia.com/gpu" not in head_c.get("resources", {}).get("limits", {}), "the head should be a CPU pod"
    assert str(head["rayStartParams"].get("num-cpus")) == "0", "the head must not run trials (num-cpus: 0)"
    assert 8265 in [p["containerPort"] for p in head_c.get("ports", [])], "dashboard port 8265 not declared on the head"

    gpu = _gpu_groups(rc)
    assert gpu, "no worker group with nvidia.com/gpu limits"
    for g in gpu:
        res = _containers(g["template"])[0]["resources"]
        n = int(res["limits"]["nvidia.com/gpu"])
        assert n >= 1
        assert int(res.get("requests", {}).get("nvidia.com/gpu", n)) == n, "GPU requests must equal limits"
        assert g["minReplicas"] == 0 and g["maxReplicas"] >= 1, "GPU group must scale from zero"
        assert 0 <= g.get("replicas", 0) <= g["maxReplicas"]


def test_raycluster_token_auth_and_secrets_by_reference():
    rc = _raycluster()
    pods = [rc["spec"]["headGroupSpec"]["template"]] + [g["template"] for g in rc["spec"]["workerGroupSpecs"]]
    auth = rc["spec"].get("authOptions") or {}
    if auth.get("mode") != "token":  # the env-var mechanism: every Ray container, token from a Secret
        for pod in pods:
            env = {e["name"]: e for e in _containers(pod)[0].get("env", [])}
            assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", "token auth not enabled on every pod"
            assert "secretKeyRef" in env.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {}), "RAY_AUTH_TOKEN must come from a Secret"
    images = {c["image"] for pod in pods for c in _containers(pod)}
    assert len(images) == 1, f"head and workers must run one image, found {images}"
    assert f"ray{RAY_VERSION}" in next(iter(images)), "image tag should name the Ray version it was built on"
    # every pod mounts the same volumes at the same paths (datasets, shared results)
    mounts = [sorted((m["name"], m["mountPath"]) for m in _containers(pod)[0].get("volumeMounts", [])) for pod in pods]
    assert all(m == mounts[0] for m in mounts), f"pods mount different volumes/paths: {mounts}"


# Field names of the ray.io/v1 types (kuberay ray-operator/apis/ray/v1/raycluster_types.go and
# rayjob_types.go, recent master): a misspelt field is dropped silently by the API server.
KUBERAY_FIELDS = {
    "RayClusterSpec": {"upgradeStrategy", "authOptions", "suspend", "managedBy", "autoscalerOptions",
                       "headServiceAnnotations", "enableInTreeAutoscaling", "gcsFaultToleranceOptions",
                       "historyServerOptions", "networkPolicy", "tlsOptions", "headGroupSpec", "rayVersion",
                       "workerGroupSpecs"},
    "HeadGroupSpec": {"template", "headService", "enableIngress", "ingressOptions", "resources", "labels",
                      "rayStartParams", "serviceType"},
    "WorkerGroupSpec": {"suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds",
                        "priority", "resources", "labels", "rayStartParams", "template", "scaleStrategy", "numOfHosts"},
    "AutoscalerOptions": {"resources", "image", "imagePullPolicy", "securityContext", "idleTimeoutSeconds",
                          "upscalingMode", "version", "env", "envFrom", "volumeMounts", "command", "args"},
    "AuthOptions": {"enableK8sTokenAuth", "secretName", "mode"},
    "RayJobSpec": {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
                   "clusterSelector", "submitterConfig", "managedBy", "deletionPolicy", "entrypoint",
                   "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus",
                   "entrypointNumGpus", "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend"},
}


def _unknown(obj: dict, kind: str) -> set:
    return set(obj) - KUBERAY_FIELDS[kind]


def test_kuberay_field_names_and_types():
    rc = _raycluster()["spec"]
    assert not _unknown(rc, "RayClusterSpec"), f"unknown RayCluster spec fields {_unknown(rc, 'RayClusterSpec')}"
    assert not _unknown(rc["headGroupSpec"], "HeadGroupSpec"), _unknown(rc["headGroupSpec"], "HeadGroupSpec")
    assert not _unknown(rc.get("autoscalerOptions", {}), "AutoscalerOptions")
    assert not _unknown(rc.get("authOptions", {}), "AuthOptions")
    assert rc.get("authOptions", {}).get("mode", "token") in ("token", "disabled")
    groups = rc.get("workerGroupSpecs", [])
    for g in [rc["headGroupSpec"], *groups]:
        if g is not rc["headGroupSpec"]:
            assert not _unknown(g, "WorkerGroupSpec"), f"{g.get('groupName')}: unknown fields {_unknown(g, 'WorkerGroupSpec')}"
        params = g.get("rayStartParams", {})
        bad = {k: v for k, v in params.items() if not isinstance(v, str)}
        assert not bad, f"rayStartParams values must be strings (map[string]string): {bad}"
    assert len({g["groupName"] for g in groups}) == len(groups), "worker group names must be unique"
    for name, job in _rayjobs().items():
        assert not _unknown(job["spec"], "RayJobSpec"), f"{name}: unknown RayJob fields {_unknown(job['spec'], 'RayJobSpec')}"
        assert job["spec"].get("submissionMode", "K8sJobMode") in ("K8sJobMode", "HTTPMode", "InteractiveMode")


def test_dashboard_service_selects_head_on_8265():
    rc = _raycluster()
    services = [s for s in the("Service") if s["spec"].get("selector", {}).get("ray.io/cluster") == rc["metadata"]["name"]]
    assert services, "no Service for the dashboard"
    svc = services[0]
    assert svc["spec"]["selector"].get("ray.io/node-type") == "head"
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", "keep the dashboard inside the cluster"
    assert any(p["port"] == 8265 and p.get("targetPort", 8265) == 8265 for p in svc["spec"]["ports"])


def test_nfs_alternative_is_shared():
    claims = {c["metadata"]["name"]: c for c in the("PersistentVolumeClaim")}
    assert "robustloss-results" in claims, "storage-nfs.yaml: claim robustloss-results"
    assert "ReadWriteMany" in claims["robustloss-results"]["spec"]["accessModes"], "results must be shared by all pods"


def _rayjobs() -> dict[str, dict]:
    return {p.name: d for p, d in k8s_docs() if d["kind"] == "RayJob"}


def test_rayjobs_target_the_cluster_and_agree():
    rc = _raycluster()
    jobs = _rayjobs()
    assert set(jobs) == {"rayjob-analytic.yaml", "rayjob-grid.yaml", "rayjob-compare.yaml"}
    argvs = {}
    for name, job in jobs.items():
        spec = job["spec"]
        assert spec.get("clusterSelector", {}).get("ray.io/cluster") == rc["metadata"]["name"] or "rayClusterSpec" in spec
        found = run_py_argvs(spec["entrypoint"])
        assert len(found) == 1, f"{name}: expected one sweeps/run.py invocation"
        argvs[name] = found[0]
    modes = {name: flag(a, "--mode") for name, a in argvs.items()}
    assert modes == {"rayjob-analytic.yaml": "analytic", "rayjob-grid.yaml": "grid", "rayjob-compare.yaml": "compare"}
    storage = {flag(a, "--storage-path") for a in argvs.values()}
    assert len(storage) == 1, f"the three jobs must share one --storage-path, got {storage}"
    path = storage.pop()
    assert re.match(r"^(s3|gs|gcs)://", path) or path.startswith("/mnt/results"), f"{path}: not storage shared by all pods"
    compare = argvs["rayjob-compare.yaml"]
    assert flag(compare, "--grid") == flag(argvs["rayjob-grid.yaml"], "--name")
    assert flag(compare, "--analytic") == flag(argvs["rayjob-analytic.yaml"], "--name")


def test_rayjob_trials_fit_the_gpu_group():
    groups = _gpu_groups(_raycluster())
    per_pod = max(int(_containers(g["template"])[0]["resources"]["limits"]["nvidia.com/gpu"]) for g in groups)
    total = sum(g["maxReplicas"] * int(_containers(g["template"])[0]["resources"]["limits"]["nvidia.com/gpu"]) for g in groups)
    for name, job in _rayjobs().items():
        argv = run_py_argvs(job["spec"]["entrypoint"])[0]
        if flag(argv, "--mode") == "compare" or not flag(argv, "--use-gpu"):
            continue
        assert flag(argv, "--address") == "auto", f"{name}: a Ray job's driver must join the cluster (--address auto)"
        gpus = float(flag(argv, "--gpus-per-trial", 1.0))
        assert gpus <= per_pod, f"{name}: --gpus-per-trial {gpus} > {per_pod} GPUs per pod: the trial never schedules"
        conc = flag(argv, "--max-concurrent-trials")
        assert conc is not None, f"{name}: autoscaling from 0 GPU pods needs --max-concurrent-trials"
        assert int(conc) * gpus <= total, f"{name}: {conc} trials x {gpus} GPUs exceed the group's {total} GPUs"


# ----------------------------------------------------------------------------------- Dockerfile
def _dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "docker" / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, rest = line.partition(" ")
            out.append((instr.upper(), rest.strip()))
    return out


def _substitute(text: str, env: dict) -> str:
    for _ in range(5):
        text = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)
    return text


def _docker_args() -> dict:
    env = {}
    for instr, rest in _dockerfile():
        if instr == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            env.setdefault(k.strip(), _substitute(v.strip().strip('"'), env))
    return env


def test_dockerfile_base_image_matches_ray_and_python():
    instrs = _dockerfile()
    froms = [rest for instr, rest in instrs if instr == "FROM"]
    assert len(froms) == 1, "expected a single-stage build with one FROM"
    image = _substitute(froms[0].split()[0], _docker_args())
    m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-(py\d+)-(cu\d+)", image)
    assert m, f"FROM {image}: expected rayproject/ray:<ray>-py<XY>-cu<XYZ>"
    assert m.group(1) == RAY_VERSION, f"base image Ray {m.group(1)} != installed Ray {RAY_VERSION}"
    assert m.group(2) == PY_TAG, f"base image {m.group(2)} != running Python {PY_TAG}"


def test_dockerfile_torch_from_matching_cuda_index():
    env = _docker_args()
    image = _substitute([r for i, r in _dockerfile() if i == "FROM"][0].split()[0], env)
    cuda = image.rsplit("-", 1)[1]
    runs = " ".join(_substitute(r, env) for i, r in _dockerfile() if i == "RUN")
    assert f"https://download.pytorch.org/whl/{cuda}" in runs, f"torch must come from the PyTorch {cuda} wheel index"
    for pkg in ("torch", "torchvision"):
        want = importlib.metadata.version(pkg).split("+")[0]
        pins = set(re.findall(rf"[\"' ]{pkg}==([\w.]+)", runs))
        assert pins == {want}, f"{pkg} pins in the image {pins} != development environment {want}"
    assert re.search(r"pip install[^&]*\s\.(\s|$)", runs), "the image must `pip install .` the project"


def test_dockerfile_runs_as_non_root_and_holds_no_secrets():
    instrs = _dockerfile()
    users = [rest for instr, rest in instrs if instr == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must end as a non-root user"
    for instr, rest in instrs:
        if instr in ("ENV", "ARG"):
            for name in re.findall(r"(\w+)=", rest):
                assert not re.search(r"SECRET|PASSWORD|ACCESS_KEY|(?<!_PATH)TOKEN$", name.upper()), f"{instr} {name}: no secrets in the image"
    assert any(instr == "COPY" for instr, _ in instrs)


def test_dockerignore_keeps_context_clean():
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().split()
    for pattern in (".git", "**/.venv", "results", "data", "**/.env", "**/*.pem", "**/.aws"):
        assert pattern in ignore, f"Dockerfile.dockerignore should exclude {pattern}"


# --------------------------------------------------------------------------- cluster launcher
@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_passes_ray_validation(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = load_docs(DEPLOY / name)[0]
    config = prepare_config(raw)  # fills provider defaults the way `ray up` does (no cloud calls)
    validate_config(config)  # Ray's JSON schema + node-type checks
    docker = raw["docker"]
    assert docker["image"] == _containers(_raycluster()["spec"]["headGroupSpec"]["template"])[0]["image"], \
        "launcher and KubeRay should run the same image"
    opts = " ".join(docker.get("run_options", []))
    assert "RAY_AUTH_MODE=token" in opts, "token auth must be on for every node (RAY_AUTH_MODE=token)"
    m = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+)", opts)
    assert m and any(m.group(1).startswith(remote.rstrip("/") + "/") for remote in raw.get("file_mounts", {})), \
        "the token file must be shipped to every node by file_mounts"
    head = " ".join(raw["head_start_ray_commands"])
    worker = " ".join(raw["worker_start_ray_commands"])
    assert "ray start --head" in head and "--num-cpus=0" in head.replace("--num-cpus 0", "--num-cpus=0")
    assert "ray start --address" in worker
    if raw["provider"]["type"] == "local":
        assert raw["provider"]["head_ip"] and raw["provider"]["worker_ips"]
        assert "available_node_types" not in raw, "manually managed local clusters take no available_node_types"
    else:
        types = raw["available_node_types"]
        assert types[raw["head_node_type"]].get("resources", {}).get("CPU") == 0, "the head must not run trials"
        assert any(re.match(r"(g\d|p\d)", t["node_config"]["InstanceType"]) for t in types.values()), "no GPU worker type"


# ----------------------------------------------------------------------------------- secrets
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_secret_access_key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GCP service-account key": re.compile(r"\"private_key(_id)?\"\s*:"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abpors]-[A-Za-z0-9-]{10,}"),
    "Ray token literal": re.compile(r"RAY_AUTH_TOKEN\s*[=:]\s*[\"']?[0-9a-f]{32,}"),
}


@pytest.mark.parametrize("path", TEXT_FILES, ids=rel)
def test_no_secrets_in_files(path):
    text = path.read_text(errors="replace")
    for what, pattern in SECRET_PATTERNS.items():
        m = pattern.search(text)
        assert not m, f"{rel(path)}: looks like a {what}: {m.group(0)[:12]}..."


def test_credentials_only_by_reference():
    assert not the("Secret"), "no Secret objects in deploy/: create them with kubectl (deploy/README.md)"
    for path, doc in k8s_docs():
        for node in _walk_dicts(doc):
            name, value = node.get("name"), node.get("value")
            if isinstance(name, str) and value is not None and "valueFrom" not in node:
                assert not re.search(r"SECRET|PASSWORD|ACCESS_KEY|TOKEN$", name.upper()), \
                    f"{rel(path)}: env {name} set inline; use valueFrom.secretKeyRef"
    for name in LAUNCHER_CONFIGS:
        raw = load_docs(DEPLOY / name)[0]
        docker = raw.get("docker", {})
        for opt in docker.get("run_options", []) + docker.get("head_run_options", []) + docker.get("worker_run_options", []):
            m = re.search(r"--env\s+(\w+)=", opt)
            if m:
                assert not re.search(r"SECRET|PASSWORD|ACCESS_KEY|TOKEN$", m.group(1).upper()), f"{name}: {opt} passes a secret inline"


def _walk_dicts(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk_dicts(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk_dicts(v)
