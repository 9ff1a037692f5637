"""docs/kubernetes.md: its manifests parse, its Job keeps every isolation property, its sketch fits Runtime."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_app.runtimes.base import Runtime
from vantage6nb.common.contract import decode_env_value, decode_environment

DOC = Path(__file__).resolve().parents[1] / "docs" / "kubernetes.md"
TEXT = DOC.read_text(encoding="utf-8")
YAML_BLOCKS = re.findall(r"^```ya?ml\n(.*?)^```", TEXT, re.M | re.S)
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", TEXT, re.M | re.S)
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _manifests() -> list[dict[str, Any]]:
    return [yaml.safe_load(block) for block in YAML_BLOCKS]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [m for m in _manifests() if m.get("kind") == kind]


def _job(role: str) -> dict[str, Any]:
    """The Job labelled ``v6nb.job: <role>`` (``run`` or ``probe``)."""
    jobs = [j for j in _of_kind("Job") if j["metadata"].get("labels", {}).get("v6nb.job") == role]
    assert len(jobs) == 1, f"docs/kubernetes.md: want one Job labelled v6nb.job: {role}"
    return jobs[0]


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def _containers(job: dict[str, Any]) -> list[dict[str, Any]]:
    pod = _pod(job)
    return [*pod.get("initContainers", []), *pod["containers"]]


JOB_CONTAINERS = [(role, c["name"]) for role in ("run", "probe") for c in _containers(_job(role))]


def _container(role: str, name: str) -> dict[str, Any]:
    return next(c for c in _containers(_job(role)) if c["name"] == name)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a ``matchLabels`` selector (the only form the doc uses) selects ``labels``."""
    assert set(selector) <= {"matchLabels"}, f"only matchLabels selectors are checked: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


# -- every block ----------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(YAML_BLOCKS)))
def test_every_yaml_block_is_one_kubernetes_object(index: int) -> None:
    doc = yaml.safe_load(YAML_BLOCKS[index])
    assert isinstance(doc, dict), f"YAML block {index + 1}: not a mapping"
    assert doc.get("apiVersion") and doc.get("kind"), f"YAML block {index + 1}: no apiVersion/kind"


def test_the_doc_has_the_manifests_it_promises() -> None:
    kinds = {m["kind"] for m in _manifests()}
    for kind in ("Job", "NetworkPolicy", "Namespace", "Service", "Secret", "Role", "RoleBinding"):
        assert kind in kinds, f"docs/kubernetes.md: no {kind} manifest"
    _job("run")
    _job("probe")


# -- the Jobs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["run", "probe"])
def test_job_never_retries_and_has_a_deadline_and_a_ttl(role: str) -> None:
    spec = _job(role)["spec"]
    assert spec["backoffLimit"] == 0, "a failed run must not be started again by the cluster"
    assert spec.get("completions", 1) == 1 and spec.get("parallelism", 1) == 1
    for key in ("activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        assert isinstance(spec.get(key), int) and spec[key] > 0, f"{role} Job: no {key}"
    assert _pod(_job(role))["restartPolicy"] == "Never"


@pytest.mark.parametrize("role", ["run", "probe"])
def test_pod_has_no_platform_credentials_and_no_host_namespaces(role: str) -> None:
    pod = _pod(_job(role))
    assert pod.get("automountServiceAccountToken") is False
    assert pod.get("enableServiceLinks") is False
    for key in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"):
        assert pod.get(key, False) is False, f"{role} pod: {key}"
    assert not any("hostPath" in v for v in pod.get("volumes", [])), (
        f"{role} pod mounts a host path"
    )
    accounts = {a["metadata"]["name"]: a for a in _of_kind("ServiceAccount")}
    account = accounts[pod["serviceAccountName"]]
    assert account.get("automountServiceAccountToken") is False


@pytest.mark.parametrize("role", ["run", "probe"])
def test_pod_security_context_is_non_root_with_runtime_default_seccomp(role: str) -> None:
    ctx = _pod(_job(role))["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] > 0 and ctx["runAsGroup"] > 0
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize(("role", "name"), JOB_CONTAINERS)
def test_every_container_is_locked_down(role: str, name: str) -> None:
    c = _container(role, name)
    pod_ctx = _pod(_job(role))["securityContext"]
    ctx = c["securityContext"]
    assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True
    assert ctx.get("runAsUser", pod_ctx.get("runAsUser")) != 0
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx.get("privileged", False) is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert not ctx["capabilities"].get("add")
    assert ctx.get("seccompProfile", pod_ctx.get("seccompProfile")) == {"type": "RuntimeDefault"}


@pytest.mark.parametrize(("role", "name"), JOB_CONTAINERS)
def test_every_container_has_equal_requests_and_limits(role: str, name: str) -> None:
    resources = _container(role, name)["resources"]
    for key in ("cpu", "memory", "ephemeral-storage"):
        assert key in resources["limits"], f"{role}/{name}: no {key} limit"
        assert resources["requests"].get(key) == resources["limits"][key], (
            f"{role}/{name}: {key} request differs from its limit (the pod would not be Guaranteed)"
        )


@pytest.mark.parametrize(("role", "name"), JOB_CONTAINERS)
def test_every_image_is_pinned_by_digest(role: str, name: str) -> None:
    image = _container(role, name)["image"]
    assert DIGEST.search(image), f"{role}/{name}: image {image} is not named by its digest"


@pytest.mark.parametrize(("role", "name"), JOB_CONTAINERS)
def test_no_secret_reaches_the_environment(role: str, name: str) -> None:
    c = _container(role, name)
    assert "envFrom" not in c
    for var in c.get("env", []):
        assert "secretKeyRef" not in var.get("valueFrom", {}), f"{role}/{name}: {var['name']}"


def test_the_algorithm_asks_for_a_gpu_as_a_limit() -> None:
    resources = _container("run", "algorithm")["resources"]
    assert resources["limits"]["nvidia.com/gpu"] >= 1
    assert resources["requests"].get("nvidia.com/gpu") == resources["limits"]["nvidia.com/gpu"]


def test_run_writable_folders_are_memory_with_a_size() -> None:
    volumes = {v["name"]: v for v in _pod(_job("run"))["volumes"]}
    empty = [v for v in volumes.values() if "emptyDir" in v]
    assert {v["name"] for v in empty} >= {"io", "tmp", "shm"}
    for v in empty:
        assert v["emptyDir"].get("medium") == "Memory", f"emptyDir {v['name']} is on disk"
        assert v["emptyDir"].get("sizeLimit"), f"emptyDir {v['name']} has no sizeLimit"
    mounts = {m["mountPath"]: m["name"] for m in _container("run", "algorithm")["volumeMounts"]}
    assert mounts["/tmp"] == "tmp" and mounts["/dev/shm"] == "shm"


def test_data_is_mounted_read_only_everywhere() -> None:
    pod = _pod(_job("run"))
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims, "the run Job mounts no data volume"
    for v in claims:
        assert v["persistentVolumeClaim"]["readOnly"] is True
        for c in _containers(_job("run")):
            for m in c.get("volumeMounts", []):
                if m["name"] == v["name"]:
                    assert m.get("readOnly") is True, f"{c['name']} mounts {m['name']} writable"


def test_token_is_a_secret_file_for_the_algorithm_only() -> None:
    volumes = {v["name"]: v for v in _pod(_job("run"))["volumes"]}
    token = volumes["token"]["secret"]
    assert token["defaultMode"] == 0o440 and [i["key"] for i in token["items"]] == ["token"]
    for c in _containers(_job("run")):
        names = {m["name"] for m in c.get("volumeMounts", [])}
        assert ("token" in names) == (c["name"] == "algorithm"), c["name"]
        assert "stage-key" not in names or c["name"] != "algorithm"
        for m in c.get("volumeMounts", []):
            if "secret" in volumes[m["name"]]:
                assert m.get("readOnly") is True, f"{c['name']} mounts {m['name']} writable"


def test_algorithm_environment_points_into_its_mounts() -> None:
    c = _container("run", "algorithm")
    env = decode_environment({v["name"]: v["value"] for v in c["env"]})  # as the wrapper does
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert env["TOKEN_FILE"].startswith("/v6nb/token/") and mounts["/v6nb/token"]["name"] == "token"
    for key in ("INPUT_FILE", "OUTPUT_FILE"):
        assert env[key].startswith("/v6nb/io/") and mounts["/v6nb/io"]["name"] == "io"
    uri = env["DEFAULT_DATABASE_URI"]
    assert mounts[uri]["readOnly"] is True
    assert env["HOST"].startswith("http://")


# -- the network ----------------------------------------------------------------------------------


def _proxy_service() -> dict[str, Any]:
    return next(s for s in _of_kind("Service") if s["metadata"]["name"] == "v6nb-proxy")


def _policies(namespace: str) -> list[dict[str, Any]]:
    return [p for p in _of_kind("NetworkPolicy") if p["metadata"]["namespace"] == namespace]


@pytest.mark.parametrize("role", ["run", "probe"])
def test_namespace_denies_everything_by_default(role: str) -> None:
    namespace = _job(role)["metadata"]["namespace"]
    deny = [
        p
        for p in _policies(namespace)
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, f"no default-deny NetworkPolicy in {namespace}"


@pytest.mark.parametrize("role", ["run", "probe"])
def test_pod_may_reach_only_the_node_pod(role: str) -> None:
    job = _job(role)
    labels = job["spec"]["template"]["metadata"]["labels"]
    mine = [
        p
        for p in _policies(job["metadata"]["namespace"])
        if p["spec"]["podSelector"] and _selects(p["spec"]["podSelector"], labels)
    ]
    assert mine, f"no NetworkPolicy selects the {role} pod ({labels})"
    service = _proxy_service()
    node_pod = service["spec"]["selector"]  # the labels of the node pod behind the proxy
    service_ports = {p["targetPort"] for p in service["spec"]["ports"]}
    for policy in mine:
        assert not policy["spec"].get("ingress"), "a run must accept no connection"
        for rule in policy["spec"].get("egress", []):
            for peer in rule["to"]:
                assert "ipBlock" not in peer, "egress to an address range"
                assert peer.get("podSelector"), "egress to a whole namespace"
                assert _selects(peer["podSelector"], node_pod), "egress to another pod"
            ports = {p["port"] for p in rule["ports"]}
            assert all(p.get("protocol") == "TCP" for p in rule["ports"])
            assert ports <= service_ports, f"egress to ports {ports - service_ports}"


def test_algorithm_port_is_the_proxy_service_port() -> None:
    env = {v["name"]: v["value"] for v in _container("run", "algorithm")["env"]}
    proxy = next(p for p in _proxy_service()["spec"]["ports"] if p["name"] == "proxy")
    assert int(decode_env_value(env["PORT"])) == proxy["port"] == proxy["targetPort"]


def test_runs_namespace_enforces_the_restricted_pod_security_standard() -> None:
    namespace = _job("run")["metadata"]["namespace"]
    ns = next(n for n in _of_kind("Namespace") if n["metadata"]["name"] == namespace)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# -- what the node may do -------------------------------------------------------------------------


def test_node_role_is_limited_to_jobs_pods_logs_and_creating_secrets() -> None:
    assert not _of_kind("ClusterRole") and not _of_kind("ClusterRoleBinding")
    (role,) = _of_kind("Role")
    assert role["metadata"]["namespace"] == _job("run")["metadata"]["namespace"]
    allowed = {"jobs", "pods", "pods/log", "secrets"}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert set(rule["resources"]) <= allowed, rule["resources"]
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["create"], "the node must not read secrets back"
        if {"pods", "pods/log"} & set(rule["resources"]):
            assert set(rule["verbs"]) <= {"get", "list", "watch"}


# -- the code sketch ------------------------------------------------------------------------------


def _sketch() -> ast.ClassDef:
    classes = [
        node
        for block in PYTHON_BLOCKS
        for node in ast.walk(ast.parse(block))
        if isinstance(node, ast.ClassDef) and node.name == "KubernetesRuntime"
    ]
    assert len(classes) == 1, "docs/kubernetes.md: want one sketch of class KubernetesRuntime"
    return classes[0]


def _sketch_methods() -> list[str]:
    return [
        n.name
        for n in _sketch().body
        if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
    ]


def test_sketch_subclasses_runtime() -> None:
    assert [ast.unparse(b) for b in _sketch().bases] == ["Runtime"]


@pytest.mark.parametrize("name", _sketch_methods())
def test_each_sketched_method_is_on_the_abstract_class(name: str) -> None:
    assert callable(getattr(Runtime, name, None)), (
        f"docs/kubernetes.md sketches KubernetesRuntime.{name}, which Runtime "
        "(node_app/runtimes/base.py) does not have: the interface changed, update the doc"
    )


def test_sketch_implements_every_abstract_method() -> None:
    missing = set(Runtime.__abstractmethods__) - set(_sketch_methods())
    assert not missing, f"the sketch does not implement {sorted(missing)}"


def test_sketch_sets_the_class_attributes_and_never_asks_for_kubernetes() -> None:
    assigned = {
        n.target.id: ast.literal_eval(n.value)
        for n in _sketch().body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.value
    }
    assert assigned == {"name": "kubernetes", "isolated": True}
    for node in ast.walk(_sketch()):
        if isinstance(node, (ast.If, ast.IfExp, ast.While)):
            assert "kubernetes" not in ast.unparse(node.test).lower(), ast.unparse(node.test)
