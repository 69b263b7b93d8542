"""How long does loading a version hold up requests, by the size of its samples.json?

    python -m benchmarks.samples_stall [--sizes 0,0.25,1,4,32] [--runs 3]

Starts `python -m app` (one worker, POLL_INTERVAL_S=0.2) on a temporary copy of models_store
pinned to iris version 1 with every version loaded. For each size in MiB (0: no samples.json),
`--runs` times, it drops a new iris version into the store: the demo's version 1 with a
samples.json of that size (one row repeated, with the answer the server gives for it, so every
row is checked). Meanwhile a client thread asks for single-row predictions of version 1 without
pause; the slowest of those answered while the version loaded is the stall. A samples.json over
the server's limit is refused before it is read. Prints a table; not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.servers import demo_store, our_server
from ml.files import SAMPLES_MAX_BYTES

ROW = [5.1, 3.5, 1.4, 0.2]
LOAD_TIMEOUT_S = 120.0


def samples_text(size: int, answer: dict[str, object]) -> str:
    """A samples.json of at most `size` bytes: ROW repeated, each with `answer`."""
    one = len(json.dumps(ROW)) + len(json.dumps(answer["prediction"])) + 4  # with ", " each
    rows = max(1, (size - 64) // one)  # 64: the keys and brackets around the rows
    expected = {"predictions": [answer["prediction"]] * rows}
    return json.dumps({"instances": [ROW] * rows, "expected": expected})


class Prober:
    """Single-row predictions of iris version 1, one after another, timed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[tuple[float, float]] = []  # (finished at, seconds)
        self.statuses: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"model": "iris", "version": 1, "features": ROW}
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                answer = client.post("/predict", json=body)
                self.times.append((time.monotonic(), time.perf_counter() - started))
                self.statuses.add(answer.status_code)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30.0)

    def slowest(self, since: float, until: float) -> tuple[float, int]:
        window = [s for at, s in self.times if since <= at <= until + 1.0]
        return (max(window) if window else 0.0), len(window)


def drop_version(store: Path, version: int, text: str | None) -> None:
    staged = store / "iris" / f".tmp-{version}"
    shutil.copytree(store / "iris" / "1", staged)
    (staged / "samples.json").unlink(missing_ok=True)
    if text is not None:
        (staged / "samples.json").write_text(text)
    os.rename(staged, store / "iris" / str(version))


def wait_loaded(url: str, version: int) -> tuple[str, str]:
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        for entry in httpx.get(url + "/models", timeout=30.0).json()["models"]:
            for status in entry["versions"] if entry["name"] == "iris" else []:
                if status["version"] == version and status["state"] in ("AVAILABLE", "FAILED"):
                    return status["state"], status["error"] or ""
        time.sleep(0.05)
    raise SystemExit(f"iris version {version} not loaded within {LOAD_TIMEOUT_S} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,0.25,1,4,32", help="MiB, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [float(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        store = demo_store(Path(tmp) / "store")
        (store / "iris" / "model.toml").write_text('version_policy = "all"\ndefault_version = 1\n')
        env = {"POLL_INTERVAL_S": "0.2"}
        with our_server(store, extra_env=env) as served, Prober(served.url) as prober:
            answer = httpx.post(served.url + "/predict", json={"model": "iris", "features": ROW})
            print(f"samples.json limit: {SAMPLES_MAX_BYTES:,} bytes")
            print("| samples.json | run | state | load s | answers | slowest answer s |")
            print("| --- | --- | --- | --- | --- | --- |")
            version = 10
            for size in sizes:
                text = samples_text(int(size * 1024 * 1024), answer.json()) if size else None
                for run in range(1, args.runs + 1):
                    version += 1
                    started = time.monotonic()
                    drop_version(store, version, text)
                    state, error = wait_loaded(served.url, version)
                    loaded = time.monotonic()
                    slowest, count = prober.slowest(started, loaded)
                    shutil.rmtree(store / "iris" / str(version))
                    label = f"{len(text):,} B" if text else "none"
                    state = f"{state}: over the limit" if "limit" in error else state
                    print(
                        f"| {label} | {run} | {state} | {loaded - started:.2f} | {count} "
                        f"| {slowest:.3f} |"
                    )
            statuses = prober.statuses
    print(f"statuses of the probe: {sorted(statuses)}")
    return 0 if statuses == {200} else 1


if __name__ == "__main__":
    raise SystemExit(main())
