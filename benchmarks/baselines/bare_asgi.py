"""The floor a Python server can reach: a bare ASGI app, orjson and onnxruntime, no checks.

Run: uvicorn benchmarks.baselines.bare_asgi:app (MODEL_PATH=...).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

MODEL_PATH = os.environ.get("MODEL_PATH", "models_store/iris/2/model.onnx")

options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(MODEL_PATH, options, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name
labels = ["setosa", "versicolor", "virginica"]
HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/health/live":
        answer: Any = {"status": "live"}
    else:
        payload = orjson.loads(body)
        rows = payload["instances"] if "instances" in payload else [payload["features"]]
        label, probabilities = session.run(None, {input_name: np.array(rows, np.float32)})
        answer = {
            "predictions": label.tolist(),
            "probabilities": [
                dict(zip(labels, row, strict=True)) for row in probabilities.tolist()
            ],
        }
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": orjson.dumps(answer)})
