"""ml.config: model.toml parsing, defaults, version policies and strict errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ml.config import (
    BatchingConfig,
    ConfigError,
    ModelConfig,
    RuntimeConfig,
    VersionPolicy,
    read_model_config,
)
from ml.files import CONFIG_MAX_BYTES


def write_toml(folder: Path, text: str) -> Path:
    (folder / "model.toml").write_text(text, encoding="utf-8")
    return folder


def config_error(folder: Path, text: str) -> str:
    write_toml(folder, text)
    with pytest.raises(ConfigError) as caught:
        read_model_config(folder)
    message = str(caught.value)
    assert message.startswith("model.toml: ")
    return message


# -- defaults ----------------------------------------------------------------------------------


def test_missing_file_gives_every_default(tmp_path: Path) -> None:
    config = read_model_config(tmp_path)
    assert config == ModelConfig()
    assert config.default_version is None
    assert config.version_policy == VersionPolicy("latest", count=1)
    assert str(config.version_policy) == "latest:1"
    assert config.batching is None
    assert config.onnxruntime.intra_op_num_threads == 1


def test_missing_model_folder_gives_every_default(tmp_path: Path) -> None:
    assert read_model_config(tmp_path / "nowhere") == ModelConfig()


def test_empty_file_gives_every_default(tmp_path: Path) -> None:
    assert read_model_config(write_toml(tmp_path, "")) == ModelConfig()


def test_empty_batching_table_turns_batching_on_with_defaults(tmp_path: Path) -> None:
    config = read_model_config(write_toml(tmp_path, "[batching]\n"))
    assert config.batching == BatchingConfig()
    assert config.batching.max_batch_size == 64
    assert config.batching.max_delay_ms == 2.0
    assert config.batching.max_queue_size == 1024


# -- values ------------------------------------------------------------------------------------


def test_full_file(tmp_path: Path) -> None:
    text = """
default_version = 3
version_policy = "latest:2"

[batching]
max_batch_size = 32
max_delay_ms = 0.5
max_queue_size = 100

[onnxruntime]
intra_op_num_threads = 4
"""
    config = read_model_config(write_toml(tmp_path, text))
    assert config.default_version == 3
    assert config.version_policy == VersionPolicy("latest", count=2)
    assert config.batching == BatchingConfig(
        max_batch_size=32, max_delay_ms=0.5, max_queue_size=100
    )
    assert config.onnxruntime == RuntimeConfig(intra_op_num_threads=4)


def test_integer_delay_is_accepted_as_a_float(tmp_path: Path) -> None:
    config = read_model_config(write_toml(tmp_path, "[batching]\nmax_delay_ms = 5\n"))
    assert config.batching is not None
    assert config.batching.max_delay_ms == 5.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("latest", VersionPolicy("latest", count=1)),
        ("latest:1", VersionPolicy("latest", count=1)),
        ("latest:3", VersionPolicy("latest", count=3)),
        (" latest:2 ", VersionPolicy("latest", count=2)),
        ("all", VersionPolicy("all")),
        ("specific:1,3", VersionPolicy("specific", versions=frozenset({1, 3}))),
        ("specific:7", VersionPolicy("specific", versions=frozenset({7}))),
    ],
)
def test_version_policy_parse(text: str, expected: VersionPolicy) -> None:
    assert VersionPolicy.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "newest",
        "latest:0",
        "latest:-1",
        "latest:x",
        "latest:1.5",
        "all:2",
        "specific",
        "specific:",
        "specific:0",
        "specific:1,,3",
        "specific:a,b",
        "specific:-1,2",
    ],
)
def test_bad_version_policy_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="latest:N"):
        VersionPolicy.parse(text)


@pytest.mark.parametrize("text", ["latest:1", "latest:4", "all", "specific:1,3,10"])
def test_version_policy_str_round_trips(text: str) -> None:
    assert str(VersionPolicy.parse(text)) == text


def test_version_policy_from_file(tmp_path: Path) -> None:
    config = read_model_config(write_toml(tmp_path, 'version_policy = "specific:1,3"\n'))
    assert config.version_policy.kind == "specific"
    assert config.version_policy.versions == frozenset({1, 3})
    config = read_model_config(write_toml(tmp_path, 'version_policy = "all"\n'))
    assert config.version_policy.kind == "all"


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ['"latest:0"', '"specific:"', '"sometimes"', "2", "true"])
def test_bad_version_policy_in_file_names_the_key(tmp_path: Path, policy: str) -> None:
    assert "version_policy" in config_error(tmp_path, f"version_policy = {policy}\n")


def test_bad_toml_syntax(tmp_path: Path) -> None:
    message = config_error(tmp_path, "default_version = = 2\n")
    assert "bad TOML syntax" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("default_versions = 2\n", "default_versions"),
        ("policy = 'all'\n", "policy"),
        ("[batching]\nmax_batch = 8\n", "batching.max_batch"),
        ("[onnxruntime]\ninter_op_num_threads = 2\n", "onnxruntime.inter_op_num_threads"),
        ("[server]\nport = 1\n", "server"),
    ],
)
def test_unknown_key_is_named(tmp_path: Path, text: str, key: str) -> None:
    assert key in config_error(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('default_version = "2"\n', "default_version"),
        ("default_version = 2.0\n", "default_version"),
        ("default_version = true\n", "default_version"),
        ("default_version = 0\n", "default_version"),
        ("default_version = -3\n", "default_version"),
        ('batching = "on"\n', "batching"),
        ("[batching]\nmax_batch_size = 0\n", "batching.max_batch_size"),
        ('[batching]\nmax_batch_size = "64"\n', "batching.max_batch_size"),
        ("[batching]\nmax_batch_size = 1.5\n", "batching.max_batch_size"),
        ('[batching]\nmax_delay_ms = "2"\n', "batching.max_delay_ms"),
        ("[batching]\nmax_delay_ms = -1.0\n", "batching.max_delay_ms"),
        ("[batching]\nmax_delay_ms = 5000.0\n", "batching.max_delay_ms"),
        ("[batching]\nmax_queue_size = 0\n", "batching.max_queue_size"),
        ("[onnxruntime]\nintra_op_num_threads = -1\n", "onnxruntime.intra_op_num_threads"),
        ("[onnxruntime]\nintra_op_num_threads = 1000\n", "onnxruntime.intra_op_num_threads"),
        ('[onnxruntime]\nintra_op_num_threads = "2"\n', "onnxruntime.intra_op_num_threads"),
    ],
)
def test_wrong_type_or_range_is_named(tmp_path: Path, text: str, key: str) -> None:
    assert key in config_error(tmp_path, text)


def test_every_problem_is_listed(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'default_version = "x"\nversion_policy = "nope"\n')
    assert "default_version" in message
    assert "version_policy" in message


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "model.toml").mkdir()  # a folder where the file belongs
    with pytest.raises(ConfigError, match=r"^model\.toml: cannot read"):
        read_model_config(tmp_path)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "model.toml").write_bytes(b"default_version = 1 # \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"^model\.toml: cannot read"):
        read_model_config(tmp_path)


def test_config_is_frozen() -> None:
    config = ModelConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.default_version = 2  # type: ignore[misc]


def test_nested_arrays_fail_with_a_reason_not_a_recursion_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n")
    assert message == "model.toml: nested too deeply to read"


def test_fifo_oversized_file_and_link_out_of_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    model = store / "iris"
    model.mkdir(parents=True)
    os.mkfifo(model / "model.toml")  # would block a plain open() for good
    with pytest.raises(ConfigError, match=r"^model\.toml: cannot read: model\.toml is a FIFO"):
        read_model_config(model, store)
    (model / "model.toml").unlink()
    write_toml(model, "# " + "x" * CONFIG_MAX_BYTES + "\n")
    with pytest.raises(ConfigError, match=r"over the 64 KiB limit for model\.toml$"):
        read_model_config(model, store)
    (model / "model.toml").unlink()
    write_toml(tmp_path, 'version_policy = "all"\n')
    (model / "model.toml").symlink_to(tmp_path / "model.toml")
    with pytest.raises(ConfigError, match="link to outside the model store"):
        read_model_config(model, store)
    assert str(read_model_config(model).version_policy) == "all"  # no store: not confined


# -- [prediction_log] ----------------------------------------------------------------------------


def test_prediction_log_table_overrides_the_share_and_the_key(tmp_path: Path) -> None:
    write_toml(tmp_path, "[prediction_log]\npercent = 2.5\nkey_header = 'X-Customer'\n")
    config = read_model_config(tmp_path).prediction_log
    assert config is not None
    assert (config.percent, config.key_header) == (2.5, "X-Customer")
    assert read_model_config(write_toml(tmp_path, "")).prediction_log is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[prediction_log]\npercent = 101\n", "prediction_log.percent"),
        ("[prediction_log]\npercent = -1\n", "prediction_log.percent"),
        ("[prediction_log]\npercent = 'all'\n", "prediction_log.percent"),
        ("[prediction_log]\nkey_header = 'two words'\n", "prediction_log.key_header"),
        ("[prediction_log]\nsample = 5\n", "prediction_log.sample"),
    ],
)
def test_prediction_log_table_is_checked(tmp_path: Path, text: str, key: str) -> None:
    assert key in config_error(tmp_path, text)
