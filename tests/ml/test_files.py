"""ml.files: only regular files inside the store are read, each within its limit, never blocking."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml.files import RefusedFile, check_file, check_folder, confined, read_bytes, read_text

LIMIT = 1024


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    (root / "iris" / "1").mkdir(parents=True)
    return root


@pytest.fixture
def unix_socket(store: Path) -> Iterator[Path]:
    path = store / "iris" / "1" / "model.toml"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        yield path


def read_in_thread(path: Path, within: Path) -> BaseException | bytes:
    """What read_bytes gives, from a thread that must end within a second (a blocked open of a
    FIFO would never end)."""
    result: list[BaseException | bytes] = []

    def target() -> None:
        try:
            result.append(read_bytes(path, within=within, limit=LIMIT))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(1.0)
    assert not thread.is_alive(), "the read blocked"
    return result[0]


def test_reads_a_regular_file(store: Path) -> None:
    path = store / "iris" / "1" / "metadata.json"
    path.write_bytes(b'{"task": "regression"}')
    assert read_bytes(path, within=store, limit=LIMIT) == b'{"task": "regression"}'
    assert read_text(path, within=store, limit=LIMIT) == '{"task": "regression"}'


def test_a_file_at_the_limit_is_read_and_one_byte_more_is_refused(store: Path) -> None:
    path = store / "iris" / "1" / "samples.json"
    path.write_bytes(b"x" * LIMIT)
    assert len(read_bytes(path, within=store, limit=LIMIT)) == LIMIT
    path.write_bytes(b"x" * (LIMIT + 1))
    with pytest.raises(RefusedFile, match=r"samples\.json is 1,025 bytes, over the 1 KiB limit"):
        read_bytes(path, within=store, limit=LIMIT)
    with pytest.raises(RefusedFile, match="over the 1 KiB limit"):
        check_file(path, within=store, limit=LIMIT)


def test_a_missing_file_is_file_not_found(store: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bytes(store / "iris" / "1" / "metadata.json", within=store, limit=LIMIT)


def test_a_fifo_is_refused_without_blocking(store: Path) -> None:
    path = store / "iris" / "1" / "metadata.json"
    os.mkfifo(path)
    result = read_in_thread(path, store)
    assert isinstance(result, RefusedFile), result
    assert str(result) == "metadata.json is a FIFO, not a regular file"


def test_a_link_to_dev_zero_is_refused(store: Path) -> None:
    """Outside the store, and a device: refused either way, never read."""
    path = store / "iris" / "1" / "samples.json"
    path.symlink_to("/dev/zero")
    result = read_in_thread(path, store)
    assert isinstance(result, RefusedFile), result
    assert "link to outside the model store" in str(result)
    # Even where links may go anywhere, a device is not a regular file.
    result = read_in_thread(path, Path("/"))
    assert isinstance(result, RefusedFile), result
    assert str(result) == "samples.json is a character device, not a regular file"


def test_a_socket_and_a_folder_are_not_regular_files(store: Path, unix_socket: Path) -> None:
    with pytest.raises(RefusedFile, match=r"^model\.toml is a socket, not a regular file$"):
        read_bytes(unix_socket, within=store, limit=LIMIT)
    folder = store / "iris" / "1" / "model.onnx"
    folder.mkdir()
    with pytest.raises(RefusedFile, match=r"model\.onnx is a folder, not a regular file"):
        check_file(folder, within=store, limit=LIMIT)


def test_links_inside_the_store_are_followed(store: Path) -> None:
    """As a Kubernetes ConfigMap volume lays files out: name -> ..data/name,
    ..data -> ..<timestamp>."""
    timestamped = store / "iris" / "..2026_12_03"
    timestamped.mkdir()
    (timestamped / "model.toml").write_text('version_policy = "all"\n')
    (store / "iris" / "..data").symlink_to("..2026_12_03")
    (store / "iris" / "model.toml").symlink_to("..data/model.toml")
    text = read_text(store / "iris" / "model.toml", within=store, limit=LIMIT)
    assert text == 'version_policy = "all"\n'
    # Another version's file, through a relative link.
    (store / "iris" / "1" / "metadata.json").write_text("{}")
    (store / "iris" / "2").mkdir()
    (store / "iris" / "2" / "metadata.json").symlink_to("../1/metadata.json")
    assert read_text(store / "iris" / "2" / "metadata.json", within=store, limit=LIMIT) == "{}"


def test_a_store_that_is_itself_a_link_is_read(tmp_path: Path, store: Path) -> None:
    """MODEL_STORE pointing at a link (KServe's /mnt/models, git-sync's current revision)."""
    (store / "iris" / "1" / "metadata.json").write_text("{}")
    link = tmp_path / "current"
    link.symlink_to(store)
    assert read_text(link / "iris" / "1" / "metadata.json", within=link, limit=LIMIT) == "{}"


def test_links_out_of_the_store_are_refused(tmp_path: Path, store: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    relative = store / "iris" / "1" / "metadata.json"
    relative.symlink_to("../../../secret.json")
    absolute = store / "iris" / "1" / "samples.json"
    absolute.symlink_to(secret)
    for path in (relative, absolute):
        with pytest.raises(RefusedFile, match="is a link to outside the model store"):
            read_bytes(path, within=store, limit=LIMIT)
    # A sibling folder whose name starts like the store's is outside it too.
    sibling = tmp_path / "store-other"
    sibling.mkdir()
    (sibling / "x.json").write_text("{}")
    (store / "iris" / "1" / "x.json").symlink_to(sibling / "x.json")
    with pytest.raises(RefusedFile):
        read_bytes(store / "iris" / "1" / "x.json", within=store, limit=LIMIT)
    assert read_bytes(absolute, within=None, limit=LIMIT) == b"{}"


def test_a_link_loop_is_an_os_error(store: Path) -> None:
    path = store / "iris" / "1" / "metadata.json"
    path.symlink_to("metadata.json")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        read_bytes(path, within=store, limit=LIMIT)
    assert confined(store, store) == os.path.realpath(store)


def test_check_folder(store: Path, tmp_path: Path) -> None:
    folder = store / "iris" / "1"
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "weights").mkdir()
    (folder / "copy.onnx").symlink_to("model.onnx")
    os.mkfifo(folder / ".staged-fifo")  # hidden: never looked at
    check_folder(folder, within=store)
    os.mkfifo(folder / "weights.bin")
    with pytest.raises(RefusedFile, match=r"weights\.bin is a FIFO, not a regular file"):
        check_folder(folder, within=store)
    (folder / "weights.bin").unlink()
    (folder / "weights.bin").symlink_to(tmp_path)
    with pytest.raises(RefusedFile, match="link to outside the model store"):
        check_folder(folder, within=store)
    (folder / "weights.bin").unlink()
    (folder / "weights.bin").symlink_to("weights.bin")
    with pytest.raises(OSError, match="Too many levels"):
        check_folder(folder, within=store)
