"""The wrapper most teams write: FastAPI, a pydantic body, a `def` route calling onnxruntime.

Serves the same single-row and batch bodies as our /predict, without the strictness, so the
comparison favours it. Two flavours, as teams write them:

- `app`: routes with a return annotation, so FastAPI serializes answers with pydantic-core;
- `untyped_app`: the same routes without one, so FastAPI encodes answers with
  `jsonable_encoder` (the form of most tutorials; several times slower on a 64-row answer).

Run: uvicorn benchmarks.baselines.naive_fastapi:app (MODEL_PATH=...).
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

MODEL_PATH = os.environ.get("MODEL_PATH", "models_store/iris/2/model.onnx")

session = ort.InferenceSession(MODEL_PATH, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name
labels = ["setosa", "versicolor", "virginica"]


class PredictIn(BaseModel):
    model: str | None = None
    features: list[float]


class BatchIn(BaseModel):
    model: str | None = None
    instances: list[list[float]]


def predict_one(body: PredictIn) -> dict[str, object]:
    label, probabilities = session.run(None, {input_name: np.array([body.features], np.float32)})
    return {
        "prediction": label[0],
        "probabilities": dict(zip(labels, probabilities[0].tolist(), strict=True)),
    }


def predict_many(body: BatchIn) -> dict[str, object]:
    label, probabilities = session.run(None, {input_name: np.array(body.instances, np.float32)})
    return {
        "predictions": label.tolist(),
        "probabilities": [dict(zip(labels, row, strict=True)) for row in probabilities.tolist()],
    }


def live() -> dict[str, str]:
    return {"status": "live"}


app = FastAPI()
app.post("/predict")(predict_one)
app.post("/predict/batch")(predict_many)
app.get("/health/live")(live)

untyped_app = FastAPI()


@untyped_app.post("/predict")
def predict_untyped(body: PredictIn):  # noqa: ANN201 - no return annotation, on purpose
    return predict_one(body)


@untyped_app.post("/predict/batch")
def predict_batch_untyped(body: BatchIn):  # noqa: ANN201 - no return annotation, on purpose
    return predict_many(body)


untyped_app.get("/health/live")(live)
