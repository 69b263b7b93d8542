"""Request bodies shared by every benchmark: one iris row, and a 64-row batch."""

from __future__ import annotations

import json

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
SINGLE = json.dumps({"model": "iris", "features": IRIS_ROW})
BATCH_ROWS = 64
BATCH = json.dumps(
    {"model": "iris", "instances": [[5.1 + i % 7 * 0.1, 3.5, 1.4 + i % 5, 0.2] for i in range(64)]}
)
