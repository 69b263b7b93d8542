"""Request bodies shared by every benchmark: one iris row, a 64-row batch, and the V2 forms."""

from __future__ import annotations

import json

import numpy as np

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
SINGLE = json.dumps({"model": "iris", "features": IRIS_ROW})
BATCH_ROWS = 64
BATCH = json.dumps(
    {"model": "iris", "instances": [[5.1 + i % 7 * 0.1, 3.5, 1.4 + i % 5, 0.2] for i in range(64)]}
)

# The same row as an Open Inference Protocol (V2) JSON request.
V2_SINGLE = json.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROW}]}
)
V2_BINARY_ROWS = 1024


def v2_binary(rows: int = V2_BINARY_ROWS) -> tuple[bytes, dict[str, str]]:
    """A V2 request of `rows` generated iris rows in binary tensor data, asking for binary
    outputs (tritonclient.http's defaults), and the headers it needs."""
    data = np.random.default_rng(0).uniform(0.1, 7.9, (rows, 4)).astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [rows, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + data, headers
