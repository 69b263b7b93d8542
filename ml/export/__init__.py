"""The export tool: a fitted scikit-learn, XGBoost or LightGBM model to a model store version.

The one place in `ml/` that imports scikit-learn, skl2onnx, pandas and joblib; the server runs
on onnxruntime alone. `api` converts, checks parity and writes; `convert`, `hgb` and `boosting`
turn estimators into graphs; `parity` compares onnxruntime with the library; `samples` writes
`samples.json`; `writer` makes the version folder appear atomically; `rollout` ships a version
straight into a rollout.
"""

from ml.export.api import export_model
from ml.export.errors import ExportError
from ml.export.rollout import RolloutSettings

__all__ = ["ExportError", "RolloutSettings", "export_model"]
