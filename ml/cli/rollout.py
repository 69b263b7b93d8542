"""`model-rollout`: start, change, promote, roll back or retire by rewriting `model.toml`.

Nobody should hand-edit TOML under pressure. Each command reads the model's `model.toml` (comments
and layout kept, with tomlkit), changes what it says, checks the result with the same rules as the
server, and replaces the file atomically; the server applies it on its next poll or on
`POST /admin/reload`.

    model-rollout start iris 3 --shadow 100   # pins the serving default; 3 may not exist yet
    model-rollout set iris --traffic 10 --sticky-header X-Routing-Key
    model-rollout promote iris        # default_version = 3; [promotion] keeps 2 loaded
    model-rollout rollback iris       # ends a rollout, else undoes the last promotion
    model-rollout retire iris         # forgets the last promotion: 2 may be unloaded
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import tomllib
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import ValidationError

from ml.config import CONFIG_FILE, ModelConfig, VersionPolicy
from ml.store import MODEL_FILE, VERSION_NAME, is_valid_model_name

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


def replace_text(path: Path, text: str) -> None:
    """Replace `path` in one rename; the staged file's name starts with '.', which the store
    scanner skips."""
    fd, staged = tempfile.mkstemp(prefix=f".{CONFIG_FILE}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise


def _rollout_table(document: tomlkit.TOMLDocument, model: str) -> Any:
    table = document.get("rollout")
    if table is None:
        raise RolloutCommandError(f"model {model} has no [rollout] in its {CONFIG_FILE}")
    return table


def _present(model_dir: Path, version: int) -> bool:
    return (model_dir / str(version) / MODEL_FILE).is_file()


def serving_default(
    model_dir: Path, document: tomlkit.TOMLDocument, besides: Collection[int]
) -> int | None:
    """The version that serves by default: `default_version` when pinned, else the highest in
    the store that the version policy selects, leaving out `besides` (rollout candidates)."""
    pinned = document.get("default_version")
    if pinned is not None:
        return int(pinned)
    try:
        policy = VersionPolicy.parse(str(document.get("version_policy", "latest:1")))
    except ValueError:
        policy = VersionPolicy("all")  # the check of the new file reports the bad policy
    found = [
        int(p.name)
        for p in model_dir.iterdir()
        if VERSION_NAME.fullmatch(p.name) and _present(model_dir, int(p.name))
    ]
    chosen = [
        v for v in found if v not in besides and (policy.kind != "specific" or v in policy.versions)
    ]
    return max(chosen, default=None)


def _start(model_dir: Path, document: tomlkit.TOMLDocument, options: Mapping[str, Any]) -> None:
    candidate = options["candidate"]
    running = document.get("rollout")
    besides = {candidate} | ({int(running["candidate"])} if running is not None else set())
    default = serving_default(model_dir, document, besides)
    if default is None:
        raise RolloutCommandError(
            f"model {model_dir.name} has no version other than {candidate} to serve by default; "
            "a rollout tries a candidate beside a default, so put the first version in place "
            "without a rollout"
        )
    # Pinned, so that neither the candidate nor a candidate of an earlier rollout becomes the
    # default when it loads, and a rollback leaves this version serving everything.
    document["default_version"] = default
    table = tomlkit.table()
    table["candidate"] = candidate
    for key, value in _settings(options).items():
        table[key] = value
    document["rollout"] = table


def _promote(model_dir: Path, document: tomlkit.TOMLDocument, model: str) -> None:
    candidate = int(_rollout_table(document, model)["candidate"])
    if not _present(model_dir, candidate):
        raise RolloutCommandError(f"{model_dir / str(candidate)} holds no {MODEL_FILE}")
    previous = serving_default(model_dir, document, {candidate})
    document["default_version"] = candidate
    del document["rollout"]
    document.pop("promotion", None)
    if previous is not None and previous != candidate:
        promotion = tomlkit.table()
        promotion["version"] = candidate
        promotion["previous"] = previous
        promotion["at"] = datetime.now(UTC).replace(microsecond=0)
        document["promotion"] = promotion


def _rollback(model_dir: Path, document: tomlkit.TOMLDocument, model: str) -> None:
    if "rollout" in document:  # the most recent step is undone first
        del document["rollout"]
        return
    promotion = document.get("promotion")
    if promotion is None:
        raise RolloutCommandError(
            f"model {model} has nothing to roll back: no [rollout] and no [promotion] in its "
            f"{CONFIG_FILE}"
        )
    previous = int(promotion["previous"])
    if not _present(model_dir, previous):
        raise RolloutCommandError(
            f"version {previous}, the default before the promotion, is no longer in the store "
            f"({model_dir / str(previous)} holds no {MODEL_FILE})"
        )
    document["default_version"] = previous
    del document["promotion"]


def _settings(options: Mapping[str, Any]) -> dict[str, Any]:
    return {OPTIONS[k]: v for k, v in options.items() if k in OPTIONS and v is not None}


def apply(
    store: Path, model: str, command: str, options: Mapping[str, Any], *, write: bool = True
) -> ModelConfig:
    """Change `<store>/<model>/model.toml` as `command` says; the configuration written (only
    checked, not written, when `write` is false)."""
    if not is_valid_model_name(model):
        raise RolloutCommandError(f"{model!r} is not a model name")
    model_dir = store / model
    if not model_dir.is_dir():
        raise RolloutCommandError(f"{model_dir} is not a model folder")
    path = model_dir / CONFIG_FILE
    document = _read(path)
    if command == "start":
        _start(model_dir, document, options)
    elif command == "set":
        table = _rollout_table(document, model)
        for key, value in _settings(options).items():
            table[key] = value
    elif command == "promote":
        _promote(model_dir, document, model)
    elif command == "rollback":
        _rollback(model_dir, document, model)
    elif command == "retire":
        if document.pop("promotion", None) is None:
            raise RolloutCommandError(f"model {model} has no [promotion] in its {CONFIG_FILE}")
    else:
        raise RolloutCommandError(f"unknown command {command!r}")
    config = _check(document)
    if write:
        replace_text(path, tomlkit.dumps(document))
    return config


def _percent(text: str) -> float:
    return float(text)


def add_settings(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, traffic: bool = True
) -> None:
    """The options that set a rollout (also offered by `model-export --rollout`)."""
    if traffic:
        parser.add_argument("--traffic", type=_percent, help="traffic_percent (0-100)")
    parser.add_argument(
        "--shadow",
        type=_percent,
        help="shadow_percent (0-100): default-answered requests "
        "the candidate also scores, off the request path",
    )
    parser.add_argument("--sticky-header", help="header whose value picks the version")
    parser.add_argument(
        "--min-agreement",
        type=float,
        help="halt below this agreement with the default (needs --shadow above 0)",
    )
    parser.add_argument(
        "--max-error-rate",
        type=float,
        help="halt above this share of failed candidate runs (needs traffic or shadow above 0)",
    )
    parser.add_argument("--window", type=int, help="rows behind each halt decision")


def summary(model: str, command: str, config: ModelConfig, pending: bool) -> str:
    """What the command left in place, in one line."""
    rollout, promotion = config.rollout, config.promotion
    if rollout is not None:
        line = (
            f"{model}: candidate {rollout.candidate} beside default {config.default_version}, "
            f"traffic {rollout.traffic_percent}%, shadow {rollout.shadow_percent}%"
        )
        if pending:
            line += (
                f" (version {rollout.candidate} is not in the store yet: pending until it loads)"
            )
    elif command == "promote" and promotion is not None:
        line = (
            f"{model}: version {promotion.version} is the default; version {promotion.previous} "
            "stays loaded until the next promotion or `model-rollout retire` (`model-rollout "
            "rollback` restores it)"
        )
    else:
        line = f"{model}: no rollout; default version {config.default_version or 'highest'}"
    return line + "; the server applies it on its next poll or POST /admin/reload"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="model-rollout",
        description="Start, change, promote, roll back or retire a model's rollout, by "
        "rewriting its model.toml (see the README, 'Rolling out a new version').",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=Path(os.environ.get("MODEL_STORE", "models_store")),
        help="the model store (default: $MODEL_STORE, else ./models_store)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser(
        "start",
        help="put a candidate version on trial (it may not be in the store yet: the rollout "
        "is pending until it loads); pins the version serving by default",
    )
    start.add_argument("model")
    start.add_argument("candidate", type=int)
    add_settings(start)
    change = commands.add_parser("set", help="change the running rollout (lifts a halt)")
    change.add_argument("model")
    add_settings(change)
    promote = commands.add_parser(
        "promote",
        help="make the candidate the default and end the rollout; the previous default stays "
        "loaded for a rollback",
    )
    promote.add_argument("model")
    rollback = commands.add_parser(
        "rollback",
        help="end the running rollout (the default serves everything), or with none running "
        "undo the last promotion (the previous default serves again)",
    )
    rollback.add_argument("model")
    retire = commands.add_parser(
        "retire", help="forget the last promotion: its previous default need not stay loaded"
    )
    retire.add_argument("model")
    args = parser.parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("store", "command", "model")}
    try:
        config = apply(args.store, args.model, args.command, options)
    except RolloutCommandError as exc:
        print(f"model-rollout: {exc}", file=sys.stderr)
        return 1
    pending = config.rollout is not None and not _present(
        args.store / args.model, config.rollout.candidate
    )
    print(summary(args.model, args.command, config, pending))
    return 0


if __name__ == "__main__":
    sys.exit(main())
