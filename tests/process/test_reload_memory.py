"""The server's memory stays flat while versions come and go through POST /admin/reload.

A real `python -m app` (one worker, watching off) gets a version of megabytes added, answered and
removed, cycle after cycle, the way the README's "POST /admin/reload" describes. Under the default
policy (`latest:1`) each cycle also unloads version 1 and loads it again, so a cycle is two loads
and two unloads. The server's resident memory is read from /proc after a warm-up and after the
measured cycles; a leak of one loaded version per cycle (about 15 MiB each) would add several
hundred MiB, far above the bound.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
from live_server import LiveServer
from onnx_factories import write_heavy_iris_classifier, write_iris_classifier

TOKEN = "reload-memory-test-token"
ROW = [5.1, 3.5, 1.4, 0.2]
WARM_UP_CYCLES = 8
MEASURED_CYCLES = 20
BOUND = 40 * 2**20


def server_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def test_reloading_versions_through_the_server_does_not_grow_its_memory(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_iris_classifier(store / "iris" / "1")
    source = write_heavy_iris_classifier(tmp_path / "source")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    env = {"POLL_INTERVAL_S": "0", "ADMIN_TOKEN": TOKEN, "LOG_LEVEL": "warning"}
    with (
        LiveServer.start(store, tmp_path, env=env) as server,
        httpx.Client(base_url=server.url, timeout=30.0) as client,
    ):
        version = 1

        def cycle() -> None:
            nonlocal version
            version += 1
            shutil.copytree(source, store / "iris" / f".tmp-{version}")
            os.rename(store / "iris" / f".tmp-{version}", store / "iris" / str(version))
            report = client.post("/admin/reload", headers=headers).json()
            assert {"model": "iris", "version": version} in report["loaded"], report
            answer = client.post("/predict", json={"model": "iris", "features": ROW})
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == version
            shutil.rmtree(store / "iris" / str(version))
            report = client.post("/admin/reload", headers=headers).json()
            assert {"model": "iris", "version": version} in report["unloaded"], report
            assert (
                client.post("/predict", json={"model": "iris", "features": ROW}).json()["version"]
                == 1
            )

        for _ in range(WARM_UP_CYCLES):
            cycle()
        before = server_rss(server.process.pid)
        for _ in range(MEASURED_CYCLES):
            cycle()
        growth = server_rss(server.process.pid) - before
    print(f"server RSS growth over {MEASURED_CYCLES} reload cycles: {growth / 2**20:+.1f} MiB")
    assert growth < BOUND, f"RSS grew {growth / 2**20:.1f} MiB over {MEASURED_CYCLES} cycles"
