"""The export tool: a fitted scikit-learn, XGBoost or LightGBM model to a model store version.

The one place in `ml/` that imports scikit-learn, skl2onnx, pandas and joblib; the server runs
on onnxruntime alone. `api` exports and writes the files; `tasks` tells what kind of answers a
model gives; `inputs` feeds the same sample to the graph and to the library; `check` converts,
runs and compares; `convert`, `hgb`, `boosting` and `text` turn estimators into graphs;
`missing` decides whether a version takes missing values; `parity` compares onnxruntime with the
library; `samples` writes `samples.json`; `writer` makes the version folder appear atomically;
`rollout` ships a version straight into a rollout.
"""

from ml.export.api import export_model
from ml.export.errors import ExportError
from ml.export.rollout import RolloutSettings

__all__ = ["ExportError", "RolloutSettings", "export_model"]
