"""ml.store: which folders of the store are models and versions, and their fingerprints."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from ml.errors import StoreUnavailable
from ml.store import ModelDir, StoreScanner, is_valid_model_name


def touch(path: Path, content: bytes = b"onnx") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store with one good model (two versions) and every kind of entry to skip."""
    root = tmp_path / "models_store"
    touch(root / "iris" / "1" / "model.onnx")
    touch(root / "iris" / "2" / "model.onnx")
    touch(root / "iris" / "2" / "metadata.json", b"{}")
    touch(root / "iris" / "model.toml", b'version_policy = "all"\n')
    # Inside the model folder: staged, hidden, non-integer and stray entries.
    touch(root / "iris" / ".tmp-3" / "model.onnx")
    touch(root / "iris" / "_staging" / "model.onnx")
    touch(root / "iris" / "v3" / "model.onnx")
    touch(root / "iris" / "0" / "model.onnx")
    touch(root / "iris" / "01" / "model.onnx")
    touch(root / "iris" / "-4" / "model.onnx")
    touch(root / "iris" / "1.5" / "model.onnx")
    touch(root / "iris" / "5")  # a file named like a version
    touch(root / "iris" / "notes.txt")
    # At the top level: bad names, staged and hidden folders, files.
    touch(root / "Iris" / "1" / "model.onnx")
    touch(root / "a..b" / "1" / "model.onnx")
    touch(root / "has space" / "1" / "model.onnx")
    touch(root / "-dash" / "1" / "model.onnx")
    touch(root / ".hidden" / "1" / "model.onnx")
    touch(root / "_staging" / "1" / "model.onnx")
    touch(root / "stray.onnx")
    touch(root / "README.md", b"# store\n")
    touch(root / "diabetes" / "1" / "model.onnx")
    return root


def test_finds_models_and_versions(store: Path) -> None:
    found = StoreScanner(store).scan()
    assert sorted(found) == ["diabetes", "iris"]
    iris = found["iris"]
    assert iris.name == "iris"
    assert iris.path == store / "iris"
    assert sorted(iris.versions) == [1, 2]
    assert iris.versions[2].version == 2
    assert iris.versions[2].path == store / "iris" / "2"
    assert sorted(found["diabetes"].versions) == [1]


def test_version_fingerprint_lists_each_file(store: Path) -> None:
    found = StoreScanner(store).scan()
    version = found["iris"].versions[2]
    names = [name for name, _, _ in version.fingerprint]
    assert names == ["metadata.json", "model.onnx"]
    stat = (store / "iris" / "2" / "model.onnx").stat()
    assert ("model.onnx", stat.st_size, stat.st_mtime_ns) in version.fingerprint


def test_config_fingerprint(store: Path) -> None:
    found = StoreScanner(store).scan()
    stat = (store / "iris" / "model.toml").stat()
    assert found["iris"].config_fingerprint == (("model.toml", stat.st_size, stat.st_mtime_ns),)
    assert found["diabetes"].config_fingerprint == ()


def test_hidden_files_in_a_version_are_not_fingerprinted(store: Path) -> None:
    touch(store / "iris" / "1" / ".model.onnx.swp")
    touch(store / "iris" / "1" / "_partial")
    (store / "iris" / "1" / "sub").mkdir()
    version = StoreScanner(store).scan()["iris"].versions[1]
    assert [name for name, _, _ in version.fingerprint] == ["model.onnx"]


def test_empty_version_folder_is_found_with_an_empty_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "iris" / "7").mkdir(parents=True)
    found = StoreScanner(tmp_path).scan()
    assert found["iris"].versions[7].fingerprint == ()


def test_model_folder_without_versions(tmp_path: Path) -> None:
    (tmp_path / "iris").mkdir()
    found = StoreScanner(tmp_path).scan()
    assert found["iris"].versions == {}


def test_skipped_entries_are_logged_once(store: Path, caplog: pytest.LogCaptureFixture) -> None:
    scanner = StoreScanner(store)
    with caplog.at_level(logging.WARNING, logger="ml.store"):
        scanner.scan()
    warned = "\n".join(r.getMessage() for r in caplog.records)
    for entry in ["Iris", "a..b", "has space", "-dash", "stray.onnx"]:
        assert str(store / entry) in warned
    for entry in ["v3", "0", "01", "-4", "1.5", "5", "notes.txt"]:
        assert str(store / "iris" / entry) in warned
    assert "README.md" not in warned
    count = len(caplog.records)
    with caplog.at_level(logging.WARNING, logger="ml.store"):
        scanner.scan()
    assert len(caplog.records) == count


def test_missing_store_is_unavailable_not_empty(tmp_path: Path) -> None:
    # An unmounted volume says nothing about the models: callers keep what they serve.
    with pytest.raises(StoreUnavailable, match="does not exist"):
        StoreScanner(tmp_path / "missing").scan()


def test_store_path_that_is_a_file_is_unavailable(tmp_path: Path) -> None:
    path = touch(tmp_path / "store")
    with pytest.raises(StoreUnavailable, match="cannot be read"):
        StoreScanner(path).scan()


def test_fingerprint_changes_with_size(store: Path) -> None:
    scanner = StoreScanner(store)
    before = scanner.scan()["iris"].versions[1].fingerprint
    model = store / "iris" / "1" / "model.onnx"
    stat = model.stat()
    model.write_bytes(b"onnx, now longer")
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: only the size moved
    after = scanner.scan()["iris"].versions[1].fingerprint
    assert after != before
    assert scanner.scan()["iris"].versions[1].fingerprint == after


def test_fingerprint_changes_with_mtime(store: Path) -> None:
    scanner = StoreScanner(store)
    model = store / "iris" / "1" / "model.onnx"
    before = scanner.scan()["iris"].versions[1].fingerprint
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert scanner.scan()["iris"].versions[1].fingerprint != before


def test_config_fingerprint_changes_with_the_file(store: Path) -> None:
    scanner = StoreScanner(store)
    before = scanner.scan()["iris"].config_fingerprint
    (store / "iris" / "model.toml").write_text('version_policy = "latest:2"\n')
    assert scanner.scan()["iris"].config_fingerprint != before


def test_new_file_in_a_version_changes_its_fingerprint(store: Path) -> None:
    scanner = StoreScanner(store)
    before = scanner.scan()["iris"].versions[1].fingerprint
    touch(store / "iris" / "1" / "metadata.json", b"{}")
    assert scanner.scan()["iris"].versions[1].fingerprint != before


def test_renamed_staging_folder_appears(store: Path) -> None:
    scanner = StoreScanner(store)
    assert 3 not in scanner.scan()["iris"].versions
    (store / "iris" / ".tmp-3").rename(store / "iris" / "3")
    assert 3 in scanner.scan()["iris"].versions


@pytest.mark.parametrize("name", ["iris", "a", "0model", "my-model_2", "x" * 64, "9", "iris-v2"])
def test_valid_model_names(name: str) -> None:
    assert is_valid_model_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "Iris", "IRIS", "..", ".", "-x", "_x", ".x", "a b", "a/b", "a..b", "x" * 65, "é", "a\n"],
)
def test_invalid_model_names(name: str) -> None:
    assert not is_valid_model_name(name)


def test_errors_lose_the_store_location(tmp_path):
    from ml.store import without_store_path

    store = tmp_path / "models_store"
    message = f"Load model from {store}/iris/1/model.onnx failed; see {store}"
    assert without_store_path(message, store) == (
        "Load model from iris/1/model.onnx failed; see <store>"
    )
    assert without_store_path("a.b ./c", Path(".")) == "a.b ./c"
    outside = "External data path escapes model directory: /tmp/x/secret.bin (see iris/1)"
    assert without_store_path(outside, store) == (
        "External data path escapes model directory: <path outside the store> (see iris/1)"
    )


# -- entries that cannot be looked into ------------------------------------------------------


def test_a_version_that_links_to_itself_fails_alone(store: Path) -> None:
    """`iris/9 -> 9`: version 9 carries the reason; the rest of the store is found as before."""
    (store / "iris" / "9").symlink_to("9")
    found = StoreScanner(store).scan()
    assert sorted(found) == ["diabetes", "iris"]
    assert sorted(found["iris"].versions) == [1, 2, 9]
    looped = found["iris"].versions[9]
    assert looped.error == "the version folder cannot be read: Too many levels of symbolic links"
    assert found["iris"].versions[2].error is None
    assert found["iris"].error is None


def test_a_model_folder_that_links_to_itself_fails_alone(store: Path) -> None:
    (store / "loop").symlink_to("loop")
    (store / "Bad-Loop").symlink_to("Bad-Loop")  # not a model name: skipped
    found = StoreScanner(store).scan()
    assert sorted(found) == ["diabetes", "iris", "loop"]
    assert found["loop"].error == (
        "the model folder cannot be read: Too many levels of symbolic links"
    )
    assert found["loop"].versions == {}
    assert found["iris"].error is None and sorted(found["iris"].versions) == [1, 2]


def test_links_out_of_the_store_fail_their_model_or_version(tmp_path: Path, store: Path) -> None:
    outside = tmp_path / "elsewhere"
    touch(outside / "1" / "model.onnx")
    (store / "away").symlink_to(outside)
    (store / "iris" / "7").symlink_to(outside / "1")
    found = StoreScanner(store).scan()
    assert found["away"].error == (
        "the model folder cannot be read: away is a link to outside the model store"
    )
    assert found["iris"].versions[7].error == (
        "the version folder cannot be read: 7 is a link to outside the model store"
    )


def test_links_inside_the_store_are_models_and_versions(store: Path) -> None:
    (store / "iris-alias").symlink_to("iris")
    (store / "iris" / "3").symlink_to("2")
    found = StoreScanner(store).scan()
    assert sorted(found["iris-alias"].versions) == [1, 2, 3]
    assert found["iris"].versions[3].error is None
    assert found["iris"].versions[3].fingerprint == found["iris"].versions[2].fingerprint


def test_a_looping_file_in_a_version_is_left_for_the_loader(store: Path) -> None:
    (store / "iris" / "2" / "weights.bin").symlink_to("weights.bin")
    os.mkfifo(store / "iris" / "2" / "samples.json")
    found = StoreScanner(store).scan()
    names = [name for name, _, _ in found["iris"].versions[2].fingerprint]
    assert names == ["metadata.json", "model.onnx"]
    assert found["iris"].versions[2].error is None


def test_a_model_whose_scan_raises_fails_alone(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scanner = StoreScanner(store)
    real = scanner._scan_model

    def scan_model(name: str, path: Path) -> ModelDir:
        if name == "iris":
            raise RecursionError("maximum recursion depth exceeded")
        return real(name, path)

    monkeypatch.setattr(scanner, "_scan_model", scan_model)
    found = scanner.scan()
    assert found["iris"].error == (
        "the model folder cannot be read: maximum recursion depth exceeded"
    )
    assert sorted(found["diabetes"].versions) == [1]
