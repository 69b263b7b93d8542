"""The wrapper most teams write: FastAPI, a pydantic body, a `def` route calling onnxruntime.

Serves the same single-row and batch bodies as our /predict, without the strictness, so the
comparison favours it. Run: uvicorn benchmarks.baselines.naive_fastapi:app (MODEL_PATH=...).
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

app = FastAPI()


class PredictIn(BaseModel):
    model: str | None = None
    features: list[float]


class BatchIn(BaseModel):
    model: str | None = None
    instances: list[list[float]]


@app.post("/predict")
def predict(body: PredictIn) -> dict[str, object]:
    label, probabilities = session.run(None, {input_name: np.array([body.features], np.float32)})
    return {
        "prediction": label[0],
        "probabilities": dict(zip(labels, probabilities[0].tolist(), strict=True)),
    }


@app.post("/predict/batch")
def predict_batch(body: BatchIn) -> dict[str, object]:
    label, probabilities = session.run(None, {input_name: np.array(body.instances, np.float32)})
    return {
        "predictions": label.tolist(),
        "probabilities": [dict(zip(labels, row, strict=True)) for row in probabilities.tolist()],
    }


@app.get("/health/live")
def live() -> dict[str, str]:
    return {"status": "live"}
