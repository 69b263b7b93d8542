"""deploy/k8s: every manifest validates against a pinned Kubernetes, and the pieces fit together.

Schema validation (kubernetes-validate, strict: unknown fields fail) catches typos and wrong
types; the tests below check what a schema cannot: probes on the right routes, a grace period
longer than the drain, the store mounted read-only where MODEL_STORE says, and selectors that
actually select the server's pods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
# The Kubernetes release the manifests are validated against; kubernetes-validate >= 1.34 ships
# its schemas. Raise it together with the `kubernetes-validate` range in pyproject.toml.
KUBERNETES_VERSION = "1.34.0"
IMAGE_USER = 10001  # the Dockerfile's USER
PRESTOP_MAX_S = 10

Manifest = dict[str, Any]


def load(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


MANIFEST_FILES = sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("tools/*.yaml"))
DOCUMENTS = [(path, doc) for path in MANIFEST_FILES for doc in load(path)]


def one(kind: str) -> Manifest:
    found = [doc for path, doc in DOCUMENTS if doc["kind"] == kind and path.parent == K8S]
    assert len(found) == 1, f"expected one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def deployment() -> Manifest:
    return one("Deployment")


@pytest.fixture(scope="module")
def container(deployment: Manifest) -> Manifest:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def env(container: Manifest) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@pytest.fixture(scope="module")
def pod_labels(deployment: Manifest) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def test_the_pinned_version_is_shipped() -> None:
    assert KUBERNETES_VERSION in all_versions(), (
        f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for "
        f"{KUBERNETES_VERSION}; it ships {all_versions()[0]} to {all_versions()[-1]}"
    )


def test_every_file_holds_manifests() -> None:
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
    } <= {doc["kind"] for _, doc in DOCUMENTS}
    for path in MANIFEST_FILES:
        assert load(path), f"{path} holds no manifest"


@pytest.mark.parametrize(
    ("path", "manifest"),
    DOCUMENTS,
    ids=[f"{p.relative_to(K8S)}:{d['kind']}" for p, d in DOCUMENTS],
)
def test_validates_strictly(path: Path, manifest: Manifest) -> None:
    # Raises ValidationError on a bad field, SchemaNotFoundError on an unknown kind/apiVersion.
    validated = kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert validated == KUBERNETES_VERSION.rsplit(".", 1)[0]


def test_probes(container: Manifest) -> None:
    port = container["ports"][0]["name"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": port}
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"]["path"] == "/health/live"


def test_the_server_listens_where_the_probes_ask(container: Manifest, env: dict[str, str]) -> None:
    assert env["HOST"] == "0.0.0.0"
    assert int(env["PORT"]) == container["ports"][0]["containerPort"]


def test_the_grpc_port_is_exposed(container: Manifest, env: dict[str, str]) -> None:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == int(env["GRPC_PORT"]) != 0
    service_ports = {p["targetPort"]: p for p in one("Service")["spec"]["ports"]}
    assert service_ports["grpc"]["appProtocol"] == "grpc"


def test_grace_period_covers_prestop_and_drain(
    deployment: Manifest, container: Manifest, env: dict[str, str]
) -> None:
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    prestop = 0.0
    hook = container.get("lifecycle", {}).get("preStop", {})
    if "exec" in hook:
        command = hook["exec"]["command"]
        assert command[0] == "sleep"
        prestop = float(command[1])
    elif "sleep" in hook:
        prestop = float(hook["sleep"]["seconds"])
    assert prestop <= PRESTOP_MAX_S
    drain = float(env["DRAIN_TIMEOUT_S"])
    assert drain > 0
    assert grace > prestop + drain, (
        f"terminationGracePeriodSeconds {grace} must exceed preStop {prestop} s + "
        f"DRAIN_TIMEOUT_S {drain} s, or the kubelet kills requests still draining"
    )


def test_requests_and_limits(container: Manifest) -> None:
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), f"{kind} needs cpu and memory"


def test_store_is_a_read_only_claim_at_model_store(
    deployment: Manifest, container: Manifest, env: dict[str, str]
) -> None:
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == env["MODEL_STORE"]]
    assert len(mounts) == 1, f"nothing mounted at MODEL_STORE={env['MODEL_STORE']}"
    assert mounts[0]["readOnly"] is True
    volume = volumes[mounts[0]["name"]]
    claim = volume["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    pvc = one("PersistentVolumeClaim")
    assert claim["claimName"] == pvc["metadata"]["name"]
    # Every replica mounts it at once, on whatever node it runs.
    assert {"ReadWriteMany", "ReadOnlyMany"} & set(pvc["spec"]["accessModes"])


def test_non_root(deployment: Manifest, container: Manifest) -> None:
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod.get("runAsUser", IMAGE_USER) == IMAGE_USER
    own = container.get("securityContext", {})
    assert own.get("runAsNonRoot", True) is True
    assert own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]


def test_service_selects_the_server_pods(pod_labels: dict[str, str], container: Manifest) -> None:
    service = one("Service")
    selector = service["spec"]["selector"]
    assert selector and selector.items() <= pod_labels.items()
    names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= names


def test_hpa_scales_the_deployment(deployment: Manifest) -> None:
    hpa = one("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert target == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # Utilization targets are relative to the requests, which the Deployment sets.
    assert any(m["type"] == "Resource" for m in hpa["spec"]["metrics"])


def test_pdb_selects_the_server_pods(pod_labels: dict[str, str]) -> None:
    pdb = one("PodDisruptionBudget")
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector and selector.items() <= pod_labels.items()
    hpa = one("HorizontalPodAutoscaler")
    # A budget that allows no disruption at the minimum replica count would block node drains.
    if "minAvailable" in pdb["spec"]:
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    else:
        assert pdb["spec"]["maxUnavailable"] >= 1


def test_deployment_selector_matches_its_template(deployment: Manifest) -> None:
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_store_loader_writes_as_the_server_user_and_is_not_served(
    deployment: Manifest,
) -> None:
    loaders = [doc for path, doc in DOCUMENTS if path.parent.name == "tools"]
    assert [d["kind"] for d in loaders] == ["Pod"]
    loader = loaders[0]
    assert loader["spec"]["securityContext"]["runAsUser"] == IMAGE_USER
    claim = loader["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == one("PersistentVolumeClaim")["metadata"]["name"]
    selector = one("Service")["spec"]["selector"]
    assert not selector.items() <= loader["metadata"]["labels"].items()
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert loader["spec"]["containers"][0]["image"] == image
