"""The prediction log of a real process with files as its only sink (single-row answers are kept
as columns there), over models the demo store does not have: integer classes answered as
numbers, integer classes named by labels under feature names JSON and %-formatting must escape,
string classes, hand-built regressors with int64 and float64 inputs. Every line reads back as
the inputs the server received and the answer the caller got, over /predict, /predict/batch,
/v2 and gRPC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
from live_server import LiveServer, wait_until
from onnx_factories import (
    iris_rows,
    write_classifier,
    write_double_input_model,
    write_int64_input_model,
)

from app.grpc.proto import grpc_predict_v2_pb2 as pb
from app.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc

ODD = ['a "quoted" name', "100% sure %s", "naïve\\path", "x"]
# model -> (feature names, input dtype, rows)
MODELS: dict[str, tuple[list[str], Any, list[list[Any]]]] = {
    "codes": (["f0", "f1", "f2", "f3"], np.float32, iris_rows(6)),
    "named": (ODD, np.float32, iris_rows(6)),
    "yesno": (["f0", "f1", "f2", "f3"], np.float32, iris_rows(6)),
    "sums64": (["p%s", 'q "r"'], np.int64, [[i, -3 * i] for i in range(6)]),
    "sumsf64": (["naïve\\x", "y"], np.float64, [[0.1 * i, 1e-300 * i] for i in range(6)]),
}


def write_store(store: Path) -> None:
    def classes(name: str, **more: Any) -> dict[str, Any]:
        return {"task": "classification", "features": MODELS[name][0], **more}

    write_classifier(store / "codes" / "1", "forest", (3, 7, 9), metadata=classes("codes"))
    named = classes("named", labels=["a", "b", "c"])
    write_classifier(store / "named" / "1", "logistic", (3, 7, 9), metadata=named)
    write_classifier(store / "yesno" / "1", "forest", ("no", "yes"), metadata=classes("yesno"))
    for name, write in (("sums64", write_int64_input_model), ("sumsf64", write_double_input_model)):
        folder = write(store / name / "1")
        meta = {"task": "regression", "features": MODELS[name][0]}
        (folder / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")


def read_lines(folder: Path) -> dict[str, dict[str, Any]]:
    lines = [
        json.loads(line)
        for path in sorted(folder.glob("predictions-*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    return {line["request_id"]: line for line in lines}


def test_every_line_reads_back_as_the_inputs_received_and_the_answer_given(tmp_path):
    store, folder = tmp_path / "store", tmp_path / "log"
    write_store(store)
    env = {"PREDICTION_LOG_DIR": str(folder)}
    answers: dict[str, dict[str, Any]] = {}  # request id -> the /predict/batch-worded answer
    sent: dict[str, tuple[str, list[list[Any]]]] = {}  # request id -> model, rows
    with LiveServer.start(store, tmp_path, env=env) as server, httpx.Client() as client:
        for model, (names, _, rows) in MODELS.items():
            for i, row in enumerate(rows):
                rid = f"{model}-{i}"
                features = dict(zip(names, row, strict=True)) if i % 2 else row
                response = client.post(server.url + "/predict", headers={"x-request-id": rid},
                                       json={"model": model, "features": features})  # fmt: skip
                assert response.status_code == 200, response.text
                got = response.json()
                answers[rid] = {"predictions": [got["prediction"]]}
                if "probabilities" in got:
                    answers[rid]["probabilities"] = [got["probabilities"]]
                sent[rid] = (model, [row])
            rid = f"{model}-batch"
            response = client.post(server.url + "/predict/batch", headers={"x-request-id": rid},
                                   json={"model": model, "instances": rows[:3]})  # fmt: skip
            assert response.status_code == 200, response.text
            answers[rid] = {
                k: v for k, v in response.json().items() if k not in ("model", "version")
            }
            sent[rid] = (model, rows[:3])
            # One row over /v2 (answered as raw tensors; logged as /predict words it).
            dtype = MODELS[model][1]
            datatype = {np.float32: "FP32", np.int64: "INT64", np.float64: "FP64"}[dtype]
            name = "input" if model in ("codes", "named", "yesno") else "x"
            rid = f"{model}-v2"
            response = client.post(
                server.url + f"/v2/models/{model}/infer", headers={"x-request-id": rid},
                json={"inputs": [{"name": name, "shape": [1, len(names)], "datatype": datatype,
                                  "data": rows[1]}]},
            )  # fmt: skip
            assert response.status_code == 200, response.text
            answers[rid], sent[rid] = answers[f"{model}-1"], (model, [rows[1]])
        request = pb.ModelInferRequest(
            model_name="named",
            raw_input_contents=[np.array([iris_rows(6)[2]], np.float32).tobytes()],
        )
        request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            stub.ModelInfer(request, metadata=(("x-request-id", "named-grpc"),), timeout=10)
        answers["named-grpc"], sent["named-grpc"] = answers["named-2"], ("named", [iris_rows(6)[2]])

        wait_until(lambda: len(read_lines(folder)) >= len(sent), "every line written", 10.0)
        lines = read_lines(folder)

    assert set(lines) == set(sent)
    for rid, (model, rows) in sent.items():
        line = lines[rid]
        names, dtype, _ = MODELS[model]
        grpc_call = rid.endswith("grpc")
        status = 0 if grpc_call else 200  # gRPC's code number: OK
        assert (line["model"], line["version"], line["error"]) == (model, 1, None)
        assert (line["status"], line["protocol"]) == (status, "grpc" if grpc_call else "http")
        assert line["latency_ms"] > 0
        assert list(line["inputs"]) == names
        for j, feature in enumerate(names):
            logged = np.array(line["inputs"][feature], dtype=dtype)
            np.testing.assert_array_equal(logged, np.array([row[j] for row in rows], dtype=dtype))
        assert line["answer"] == answers[rid], rid
