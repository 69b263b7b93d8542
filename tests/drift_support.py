"""Generated data and models for the drift tests: a regressor on one numeric tensor and a
classifier over named columns with a string column, neither made for the demo.

Columns: `load` (normal), `idle` (zero for most rows: deciles collapse onto 0), `floors` (three
values: most edges collapse), `ratio` (uniform) and, for the classifier, `city` (strings).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from ml.export.api import export_model

NUMERIC = ["load", "idle", "floors", "ratio"]
CITIES = ["oslo", "lima", "pune", "kyiv", "baku", "doha", "suva", "riga"]
CITY_SHARES = [0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05]
LOAD_MEAN, LOAD_SD = 10.0, 2.0


def frame(n_rows: int, seed: int, *, load_shift_sd: float = 0.0) -> pd.DataFrame:
    """`n_rows` rows; `load` moved by `load_shift_sd` of its standard deviation."""
    rng = np.random.default_rng(seed)
    idle = np.where(rng.random(n_rows) < 0.6, 0.0, rng.exponential(3.0, n_rows))
    return pd.DataFrame(
        {
            "load": rng.normal(LOAD_MEAN + load_shift_sd * LOAD_SD, LOAD_SD, n_rows),
            "idle": idle,
            "floors": rng.choice([1.0, 2.0, 3.0], n_rows, p=[0.5, 0.3, 0.2]),
            "ratio": rng.random(n_rows),
            "city": rng.choice(CITIES, n_rows, p=CITY_SHARES).astype(object),
        }
    )


def export_regressor(store: Path, reference: pd.DataFrame, name: str = "usage") -> Path:
    numbers = reference[NUMERIC]
    target = numbers["load"] * 2 + numbers["idle"] - numbers["floors"] + numbers["ratio"]
    model = RandomForestRegressor(n_estimators=5, max_depth=6, random_state=0)
    model.fit(numbers.to_numpy(), target.to_numpy())
    sample = numbers.iloc[:64].to_numpy()
    return export_model(
        model, store, name, sample, feature_names=NUMERIC, reference=numbers.to_numpy()
    )


def export_classifier(store: Path, reference: pd.DataFrame, name: str = "churn") -> Path:
    target = np.where(reference["load"] + 3 * reference["ratio"] > 11.5, "stays", "leaves")
    model = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [("city", OneHotEncoder(handle_unknown="ignore"), ["city"])],
                    remainder="passthrough",
                ),
            ),
            ("classify", LogisticRegression(max_iter=500)),
        ]
    )
    model.fit(reference, target)
    return export_model(model, store, name, reference.iloc[:64], reference=reference)


def rows_of(data: pd.DataFrame, columns: list[str]) -> list[list[float]] | list[dict]:
    """Request rows: lists for the numeric tensor, objects by name for named columns."""
    if columns == NUMERIC:
        return data[NUMERIC].to_numpy().tolist()
    return data[columns].to_dict(orient="records")
