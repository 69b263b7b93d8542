"""`model-export`: turn a fitted estimator saved with joblib into a new model store version.

    model-export model.joblib --name iris --sample rows.csv

A server-only install lacks the export extra; the command then says which extra to install
instead of failing on an import.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `model-export`."""
    try:
        from ml.export.api import TASKS
    except ModuleNotFoundError as exc:
        print(
            f"model-export needs the export extra ({exc.name} is not installed): "
            "pip install 'onnx-model-server[export]'",
            file=sys.stderr,
        )
        return 2
    return _main(_parse_args(argv, TASKS))


def _parse_args(argv: Sequence[str] | None, tasks: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="model-export",
        description="Export a fitted scikit-learn, XGBoost or LightGBM model (joblib) "
        "to a new model store version.",
    )
    parser.add_argument("model", type=Path, help="the fitted estimator, saved with joblib.dump")
    parser.add_argument("--name", required=True, help="model name in the store")
    parser.add_argument(
        "--sample", required=True, type=Path, help="CSV of rows to check parity on (with header)"
    )
    parser.add_argument(
        "--reference", type=Path, help="CSV of training rows to profile for drift (with header)"
    )
    parser.add_argument("--store", type=Path, default=Path("models_store"), help="store folder")
    parser.add_argument("--version", type=int, help="version to write (default: next free)")
    parser.add_argument("--labels", help="comma-separated class names, in classes_ order")
    parser.add_argument(
        "--targets",
        help="comma-separated names of a regressor's several targets, in output order "
        "(default y0,y1,...)",
    )
    parser.add_argument(
        "--int-columns",
        help="comma-separated columns to serve as int64 inputs (default: every numeric "
        "column is a float input, however the CSV writes it)",
    )
    parser.add_argument("--task", choices=tasks, help="override the detected task")
    parser.add_argument("--description", help="free text stored in metadata.json")
    parser.add_argument(
        "--double",
        action="store_true",
        help="feed numbers as float64 (for trees whose thresholds float32 cannot hold)",
    )
    _add_rollout_options(parser)
    return parser.parse_args(argv)


def _add_rollout_options(parser: argparse.ArgumentParser) -> None:
    from ml.cli.rollout import add_settings

    group = parser.add_argument_group(
        "shipping into a rollout",
        "with --rollout, the new version starts as the candidate of a rollout (the options of "
        "model-rollout start) and never answers more than its share of traffic",
    )
    group.add_argument(
        "--rollout",
        type=float,
        metavar="PERCENT",
        help="the new version's share of requests naming no version (0-100)",
    )
    add_settings(group, traffic=False)


def _rollout_settings(args: argparse.Namespace) -> Any:
    """The RolloutSettings the options ask for; None without --rollout."""
    from ml.cli.rollout import OPTIONS
    from ml.export.api import RolloutSettings
    from ml.export.errors import ExportError

    extras = [option for option in OPTIONS if option != "traffic"]
    if args.rollout is None:
        given = [
            f"--{name.replace('_', '-')}" for name in extras if getattr(args, name) is not None
        ]
        if given:
            raise ExportError(f"{', '.join(given)} only apply with --rollout PERCENT")
        return None
    return RolloutSettings(
        traffic_percent=args.rollout,
        shadow_percent=args.shadow,
        sticky_header=args.sticky_header,
        min_agreement=args.min_agreement,
        max_error_rate=args.max_error_rate,
        window=args.window,
    )


def _main(args: argparse.Namespace) -> int:
    """Prints the written folder; returns 1 on ExportError."""
    from ml.export.api import export_model
    from ml.export.errors import ExportError

    try:
        rollout = _rollout_settings(args)
        estimator = _load_estimator(args.model)
        sample = _read_sample(args.sample)
        reference = _read_sample(args.reference) if args.reference else None
        written = export_model(
            estimator,
            args.store,
            args.name,
            sample,
            version=args.version,
            labels=_names(args.labels),
            targets=_names(args.targets),
            int_columns=_names(args.int_columns) or (),
            task=args.task,
            description=args.description,
            double=args.double,
            rollout=rollout,
            reference=reference,
        )
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(written)
    return 0


def _names(text: str | None) -> list[str] | None:
    return [name.strip() for name in text.split(",")] if text else None


def _load_estimator(path: Path) -> Any:
    """Unpickle the estimator; joblib files run code on load, so only load trusted files."""
    import joblib

    from ml.export.errors import ExportError

    try:
        return joblib.load(path)
    except (OSError, EOFError, ValueError, ImportError, pickle.UnpicklingError) as exc:
        raise ExportError(f"cannot load {path}: {exc}") from exc


def _read_sample(path: Path) -> Any:
    """The sample rows (a DataFrame); the header row names the features."""
    import pandas as pd

    from ml.export.errors import ExportError

    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc
