"""What users read never cites a document they do not have: no help text, message, docstring or
comment of the packages, the status page or the deployment files names the service contract
(the README is the user's reference)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from cli_tools import CONSOLE_SCRIPTS, NO_ARGUMENTS, help_argvs
from live_server import REPO

from ml.cli.demo_models import main as demo_main

SHIPPED = ("app", "ml", "loadtest", "deploy")
TEXT_SUFFIXES = {".py", ".js", ".html", ".css", ".proto", ".json", ".yaml", ".yml", ".toml"}
PRIVATE = re.compile(r"CONTRACT|[Ss]ection \d+ of the contract|contract section \d+")


def shipped_files() -> list[Path]:
    files = [
        path
        for folder in SHIPPED
        for path in sorted((REPO / folder).rglob("*"))
        if path.suffix in TEXT_SUFFIXES and path.is_file() and "__pycache__" not in path.parts
    ]
    assert len(files) > 50  # the packages were found
    return files


def test_no_shipped_file_cites_the_contract() -> None:
    cited = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in shipped_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert not cited, "\n".join(cited)


# Every console script's --help (and its subcommands'), and the demo store builder's.
HELP: list[tuple[str, Callable[[Sequence[str]], object], list[str]]] = [
    *[
        (" ".join([name, *argv[:-1]]), main, argv)
        for name, main in CONSOLE_SCRIPTS.items()
        if name not in NO_ARGUMENTS
        for argv in help_argvs(name)
    ],
    ("demo store builder", demo_main, ["--help"]),
]


@pytest.mark.parametrize("name", NO_ARGUMENTS)
def test_the_scripts_without_help_take_no_arguments(name: str) -> None:
    """A console script is left out of the --help checks only when it has no parser to ask."""
    assert not inspect.signature(CONSOLE_SCRIPTS[name]).parameters


@pytest.mark.parametrize(("name", "main", "argv"), HELP, ids=[h[0] for h in HELP])
def test_help_texts_do_not_cite_the_contract(
    name: str,
    main: Callable[[Sequence[str]], object],
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "usage:" in text
    assert not PRIVATE.search(text), f"{name} --help cites the contract:\n{text}"
