"""`model-rollout`: start, change, promote or roll back a rollout by rewriting `model.toml`.

Nobody should hand-edit TOML under pressure. Each command reads the model's `model.toml` (comments
and layout kept, with tomlkit), changes what it says, checks the result with the same rules as the
server, and replaces the file atomically; the server applies it on its next poll or on
`POST /admin/reload`.

    model-rollout start iris 3 --shadow 100
    model-rollout set iris --traffic 10 --sticky-header X-Routing-Key
    model-rollout promote iris        # default_version = 3, [rollout] removed
    model-rollout rollback iris       # [rollout] removed; the default serves everything
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import ValidationError

from ml.config import CONFIG_FILE, ModelConfig
from ml.store import MODEL_FILE, is_valid_model_name

# Command-line option -> [rollout] key.
OPTIONS = {
    "traffic": "traffic_percent",
    "shadow": "shadow_percent",
    "sticky_header": "sticky_header",
    "min_agreement": "min_agreement",
    "max_error_rate": "max_error_rate",
    "window": "window",
}


class RolloutCommandError(Exception):
    """The command cannot be applied; the message says why, and nothing was written."""


def _read(path: Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return tomlkit.document()
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise RolloutCommandError(f"{path}: cannot read: {exc}") from exc


def _check(document: tomlkit.TOMLDocument) -> ModelConfig:
    try:
        return ModelConfig.model_validate(tomllib.loads(tomlkit.dumps(document)))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        )
        raise RolloutCommandError(f"the new {CONFIG_FILE} would be refused: {problems}") from exc


def _write(path: Path, document: tomlkit.TOMLDocument) -> None:
    """Replace `path` in one rename; the staged file's name starts with '.', which the store
    scanner skips."""
    fd, staged = tempfile.mkstemp(prefix=f".{CONFIG_FILE}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(tomlkit.dumps(document))
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise


def _rollout_table(document: tomlkit.TOMLDocument, model: str) -> Any:
    table = document.get("rollout")
    if table is None:
        raise RolloutCommandError(f"model {model} has no [rollout] in its {CONFIG_FILE}")
    return table


def apply(store: Path, model: str, command: str, options: dict[str, Any]) -> ModelConfig:
    """Change `<store>/<model>/model.toml` as `command` says; the configuration written."""
    if not is_valid_model_name(model):
        raise RolloutCommandError(f"{model!r} is not a model name")
    model_dir = store / model
    if not model_dir.is_dir():
        raise RolloutCommandError(f"{model_dir} is not a model folder")
    path = model_dir / CONFIG_FILE
    document = _read(path)
    changes = {OPTIONS[k]: v for k, v in options.items() if k in OPTIONS and v is not None}
    if command == "start":
        candidate = options["candidate"]
        if not (model_dir / str(candidate) / MODEL_FILE).is_file():
            raise RolloutCommandError(f"{model_dir / str(candidate)} holds no {MODEL_FILE}")
        table = tomlkit.table()
        table["candidate"] = candidate
        for key, value in changes.items():
            table[key] = value
        document["rollout"] = table
    elif command == "set":
        table = _rollout_table(document, model)
        for key, value in changes.items():
            table[key] = value
    elif command == "promote":
        candidate = int(_rollout_table(document, model)["candidate"])
        if not (model_dir / str(candidate) / MODEL_FILE).is_file():
            raise RolloutCommandError(f"{model_dir / str(candidate)} holds no {MODEL_FILE}")
        document["default_version"] = candidate
        del document["rollout"]
    elif command == "rollback":
        _rollout_table(document, model)
        del document["rollout"]
    else:
        raise RolloutCommandError(f"unknown command {command!r}")
    config = _check(document)
    _write(path, document)
    return config


def _percent(text: str) -> float:
    return float(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="model-rollout",
        description="Start, change, promote or roll back a model's rollout (CONTRACT section 6).",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=Path(os.environ.get("MODEL_STORE", "models_store")),
        help="the model store (default: $MODEL_STORE, else ./models_store)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def with_settings(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--traffic", type=_percent, help="traffic_percent (0-100)")
        sub.add_argument("--shadow", type=_percent, help="shadow_percent (0-100)")
        sub.add_argument("--sticky-header", help="header whose value picks the version")
        sub.add_argument("--min-agreement", type=float, help="halt below this agreement")
        sub.add_argument("--max-error-rate", type=float, help="halt above this error rate")
        sub.add_argument("--window", type=int, help="rows behind each halt decision")

    start = commands.add_parser("start", help="put a candidate version on trial")
    start.add_argument("model")
    start.add_argument("candidate", type=int)
    with_settings(start)
    change = commands.add_parser("set", help="change the running rollout (lifts a halt)")
    change.add_argument("model")
    with_settings(change)
    promote = commands.add_parser("promote", help="pin the candidate as the default; end")
    promote.add_argument("model")
    rollback = commands.add_parser("rollback", help="end the rollout; the default serves all")
    rollback.add_argument("model")
    args = parser.parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("store", "command", "model")}
    try:
        config = apply(args.store, args.model, args.command, options)
    except RolloutCommandError as exc:
        print(f"model-rollout: {exc}", file=sys.stderr)
        return 1
    rollout = config.rollout
    if rollout is None:
        print(f"{args.model}: no rollout; default version {config.default_version or 'highest'}")
    else:
        print(
            f"{args.model}: candidate {rollout.candidate}, traffic {rollout.traffic_percent}%, "
            f"shadow {rollout.shadow_percent}%; the server applies it on its next poll or "
            "POST /admin/reload"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
