"""deploy/kserve: the ServingRuntime and the InferenceService validate against the
`openAPIV3Schema` of KServe's CRDs (../shared/schemas/kserve), strictly, and fit the server.

The CRD schemas leave unknown fields to the API server, which drops them without a word; the
check here refuses them, so that a misspelt field fails here instead of vanishing on a cluster.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from app.config import Settings

REPO = Path(__file__).resolve().parents[2]
KSERVE = REPO / "deploy" / "kserve"
CRDS = REPO.parent / "shared" / "schemas" / "kserve"
CRD_FILES = {
    "ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
}

Manifest = dict[str, Any]


def load(name: str) -> Manifest:
    documents = [d for d in yaml.safe_load_all((KSERVE / name).read_text()) if d]
    assert len(documents) == 1
    return documents[0]


def strict(schema: Any) -> Any:
    """`schema` with every object that lists its properties closed to others."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def validator(manifest: Manifest) -> jsonschema.Draft7Validator:
    path = CRDS / CRD_FILES[manifest["kind"]]
    if not path.is_file():
        pytest.fail(f"KServe's CRDs are expected in {CRDS}")
    crd = yaml.safe_load(path.read_text())
    group, version = manifest["apiVersion"].split("/")
    assert crd["spec"]["group"] == group
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    return jsonschema.Draft7Validator(strict(served["schema"]["openAPIV3Schema"]))


RUNTIME = load("servingruntime.yaml")
SERVICE = load("inferenceservice.yaml")


@pytest.mark.parametrize("manifest", [RUNTIME, SERVICE], ids=lambda m: m["kind"])
def test_validates_against_kserves_crd(manifest):
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator(manifest).iter_errors(manifest)
    ]
    assert not errors


def test_a_misspelt_or_mistyped_field_fails():
    typo = copy.deepcopy(RUNTIME)
    typo["spec"]["protocolVersion"] = typo["spec"].pop("protocolVersions")
    assert not validator(typo).is_valid(typo)
    wrong_type = copy.deepcopy(RUNTIME)
    wrong_type["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    assert not validator(wrong_type).is_valid(wrong_type)


def container_env() -> dict[str, str]:
    (container,) = RUNTIME["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    unknown = {name.lower() for name in env} - set(Settings.model_fields)
    assert not unknown, f"not settings of the server: {unknown}"
    return env


def test_the_runtime_serves_onnx_over_both_protocols_from_mnt_models():
    spec = RUNTIME["spec"]
    assert set(spec["protocolVersions"]) == {"v2", "grpc-v2"}
    assert {"name": "onnx", "version": "1", "autoSelect": True, "priority": 1} in spec[
        "supportedModelFormats"
    ]
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    env = container_env()
    assert env["MODEL_STORE"] == "/mnt/models"
    assert env["HOST"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http1": int(env["PORT"]), "h2c": int(env["GRPC_PORT"])}
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
        assert container[probe]["httpGet"] == {"path": path, "port": ports["http1"]}


def test_the_inference_service_runs_on_the_runtime():
    model = SERVICE["spec"]["predictor"]["model"]
    assert model["runtime"] == RUNTIME["metadata"]["name"]
    assert model["modelFormat"]["name"] in {
        f["name"] for f in RUNTIME["spec"]["supportedModelFormats"]
    }
    assert model["protocolVersion"] in RUNTIME["spec"]["protocolVersions"]
    assert model["storageUri"]
