"""The command-line tools users are given, for the tests that read what they say: the console
scripts pyproject.toml installs, each resolved to the function it runs, and the subcommands whose
--help carries their own options."""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Callable

from live_server import REPO


def console_scripts() -> dict[str, Callable[..., object]]:
    """Each `[project.scripts]` entry of pyproject.toml, its "module:attr" imported."""
    with (REPO / "pyproject.toml").open("rb") as file:
        scripts: dict[str, str] = tomllib.load(file)["project"]["scripts"]
    resolved: dict[str, Callable[..., object]] = {}
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        resolved[name] = getattr(importlib.import_module(module), attr)
    return resolved


CONSOLE_SCRIPTS = console_scripts()
# The server is configured from its environment only: it has no arguments and no --help.
NO_ARGUMENTS = ("model-server",)
# Commands whose options live on their subcommands: each subcommand's --help is read too.
SUBCOMMANDS = {"model-rollout": ("start", "set", "promote", "rollback", "retire")}


def help_argvs(command: str) -> list[list[str]]:
    """The argument lists that print a command's --help: its own, then each subcommand's."""
    return [["--help"], *([name, "--help"] for name in SUBCOMMANDS.get(command, ()))]
