"""Every command the README names exists and takes the flags it is shown with, so that a renamed
benchmark, module or flag fails the suite instead of leaving a figure nobody can reproduce.

A command is `python -m <module>` (benchmarks included) or a `model-...` word where a command
starts (a line, a code span or a parenthesis, or after a path's `/`), which must be a console script
of pyproject.toml; its flags are those written after it up to the end of its code span or line
(lines continued with a backslash included) and, for a benchmark,
those of code spans that hold only flags (`--rounds 4 --seconds 5`) later in the same paragraph,
as the README names the settings of a run beside the figures it gave. (Beside other commands such
spans name options of something else: uvicorn's `--http`, docker's `--stop-timeout`.)"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass, field

import pytest
from cli_tools import CONSOLE_SCRIPTS, NO_ARGUMENTS, help_argvs
from live_server import REPO

README = REPO / "README.md"

# A `model-` word counts where a command begins, so that prose ("model-level"), image names
# ("onnx-model-server:0.1.0"), pod names ("model-store-loader") and files ("model-server.json")
# are not taken for console scripts.
COMMAND = re.compile(
    r"(?:\bpython[\d.]* -m ([A-Za-z_][\w.]*)"
    r"|(?:^[ \t]*|(?<=[`(/]))(model-[a-z]+)(?![\w-]|\.\w))",
    re.M,
)
# What follows a command on its line (and on lines continued with a backslash): its arguments.
TAIL = re.compile(r"(?:[^`\n|)\\]|\\\n|\\)*")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
FLAGS_ONLY_SPAN = re.compile(r"`(--[^`]*)`")


@dataclass
class Mention:
    command: str  # a module path, or a console script's name
    line: int
    script: bool  # named as a console script (`model-...`), not as `python -m`
    flags: set[str] = field(default_factory=set)


def mentions(text: str) -> list[Mention]:
    """Each command in the README, in order, with the flags shown with it."""
    found: list[Mention] = []
    offset = 0
    for paragraph in re.split(r"\n\s*\n", text):
        start = text.index(paragraph, offset)
        offset = start + len(paragraph)
        events: list[tuple[int, Mention | set[str]]] = []
        for match in COMMAND.finditer(paragraph):
            tail = TAIL.match(paragraph, match.end())
            flags = set(FLAG.findall(tail.group() if tail else ""))
            line = text.count("\n", 0, start + match.start()) + 1
            mention = Mention(
                match.group(1) or match.group(2), line, match.group(2) is not None, flags
            )
            events.append((match.start(), mention))
        for span in FLAGS_ONLY_SPAN.finditer(paragraph):
            events.append((span.start(), set(FLAG.findall(span.group(1)))))
        current: Mention | None = None
        for _, event in sorted(events, key=lambda e: e[0]):
            if isinstance(event, Mention):
                current = event
                found.append(event)
            elif current is not None and current.command.startswith("benchmarks."):
                current.flags |= event
    return found


MENTIONS = mentions(README.read_text(encoding="utf-8"))


HELP: dict[str, str] = {}  # --help of each command, asked once per session


def help_text(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The command's --help from its own parser, run in process as its console script would be."""
    if command not in HELP:
        assert command not in NO_ARGUMENTS, f"{command} takes no arguments, so no flags"
        main = CONSOLE_SCRIPTS.get(command)
        if main is None:
            module = importlib.import_module(command)
            assert hasattr(module, "main"), f"{command} has no main to ask for --help"
            main = module.main
        texts = []
        for argv in help_argvs(command):
            capsys.readouterr()
            with pytest.raises(SystemExit) as done:
                main(argv)
            assert done.value.code == 0, f"{command} {' '.join(argv)} exited {done.value.code}"
            texts.append(capsys.readouterr().out)
        HELP[command] = "\n".join(texts)
    return HELP[command]


def test_the_readme_names_the_benchmarks() -> None:
    """The parser sees what the README shows: at least the benchmarks the figures come from."""
    named = {m.command for m in MENTIONS}
    assert {"benchmarks.compare", "benchmarks.graph_reader", "model-loadtest", "app"} <= named
    assert "model-server" in named  # the console script that serves, beside `python -m app`
    compare_flags = set().union(*(m.flags for m in MENTIONS if m.command == "benchmarks.compare"))
    assert {"--rounds", "--seconds", "--only"} <= compare_flags


@pytest.mark.parametrize(
    "mention", MENTIONS, ids=[f"README:{m.line}:{m.command}" for m in MENTIONS]
)
def test_the_command_exists_with_its_flags(
    mention: Mention, capsys: pytest.CaptureFixture[str]
) -> None:
    if mention.script:
        assert mention.command in CONSOLE_SCRIPTS, (
            f"README line {mention.line}: {mention.command} is not a console script of pyproject"
        )
    else:
        assert importlib.util.find_spec(mention.command) is not None, (
            f"README line {mention.line}: no module {mention.command}"
        )
    if not mention.flags:
        return
    accepted = set(FLAG.findall(help_text(mention.command, capsys)))
    unknown = sorted(mention.flags - accepted)
    assert not unknown, (
        f"README line {mention.line}: {mention.command} does not take {', '.join(unknown)}"
    )
