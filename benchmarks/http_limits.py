"""What the HTTP limits (app.connections) cost: single-row /predict, guarded against plain.

    python -m benchmarks.http_limits [--rounds 3] [--seconds 5] [--connections 8]

Each round starts the service under uvicorn twice in turn, with uvicorn's own httptools protocol
and with `app.connections:GuardedHttp`, everything else the same, and drives each with the same
keep-alive clients (asyncio, raw sockets; no wrk needed). Medians over rounds; read the ratio.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from benchmarks.bodies import SINGLE
from benchmarks.options import rounds_parser
from benchmarks.servers import REPO
from loadtest.server import serve

STORE = REPO / "models_store"
PROTOCOLS = {
    "uvicorn httptools": "httptools",
    "guarded (app.connections)": "app.connections:GuardedHttp",
}


@dataclass(frozen=True)
class Run:
    requests_per_s: float
    p50_ms: float
    p99_ms: float


def _request(port: int) -> bytes:
    body = SINGLE.encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> None:
    if b"content-length:" in head:
        await reader.readexactly(int(head.split(b"content-length:")[1].split(b"\r\n")[0]))
        return
    while size := int(await reader.readuntil(b"\r\n"), 16):  # chunked
        await reader.readexactly(size + 2)
    await reader.readexactly(2)


async def _client(port: int, until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = _request(port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            await _read_body(reader, head.lower())
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def _drive(port: int, connections: int, seconds: float) -> Run:
    latencies: list[float] = []
    until = time.perf_counter() + seconds
    await asyncio.gather(*(_client(port, until, latencies) for _ in range(connections)))
    latencies.sort()
    return Run(
        len(latencies) / seconds,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


class _Transport(asyncio.Transport):
    """A connection that goes nowhere, for timing the protocol alone."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name in ("sockname", "peername") else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _protocol_seconds(http: str, requests: int) -> float:
    """Seconds the protocol `http` takes for `requests` single-row POSTs on one connection,
    the app answering at once."""
    config = Config(app=_answer, http=http, proxy_headers=False, log_level="warning")
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(_Transport())
    request = _request(8000)
    started = time.perf_counter()
    for _ in range(requests):
        protocol.data_received(request)
        while protocol.cycle is not None and not protocol.cycle.response_complete:  # noqa: ASYNC110
            await asyncio.sleep(0)  # the request's task runs
    seconds = time.perf_counter() - started
    protocol.connection_lost(None)
    return seconds


def protocol_cost(rounds: int, requests: int = 20_000) -> dict[str, float]:
    """Microseconds per request of each protocol alone, medians over `rounds` alternations."""
    times: dict[str, list[float]] = {name: [] for name in PROTOCOLS}
    for _ in range(rounds):
        for name, http in PROTOCOLS.items():
            seconds = asyncio.run(_protocol_seconds(http, requests))
            times[name].append(seconds / requests * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(rounds: int, seconds: float, connections: int) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {name: [] for name in PROTOCOLS}
    env = {
        "MODEL_STORE": str(STORE),
        "POLL_INTERVAL_S": "0",
        "ACCESS_LOG": "false",
        "LOG_LEVEL": "warning",
        "GRPC_PORT": "0",
    }
    for round_index in range(rounds):
        for name, http in PROTOCOLS.items():
            command = [
                sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
                "--port", "{port}", "--http", http, "--no-access-log", "--log-level", "warning",
            ]  # fmt: skip
            with serve(command, env, cwd=REPO) as server:
                port = int(server.url.rsplit(":", 1)[1])
                asyncio.run(_drive(port, connections, 1.0))  # warm-up
                run = asyncio.run(_drive(port, connections, seconds))
            runs[name].append(run)
            print(
                f"round {round_index + 1} {name:28} {run.requests_per_s:8.0f} req/s  "
                f"p50 {run.p50_ms:5.2f} ms  p99 {run.p99_ms:6.2f} ms",
                flush=True,
            )
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = rounds_parser(__doc__, rounds=3, seconds=5.0)
    args = parser.parse_args(argv)
    cost = protocol_cost(max(args.rounds, 5))
    for name, micros in cost.items():
        print(f"protocol alone: {name:28} {micros:6.2f} µs a request")
    runs = measure(args.rounds, args.seconds, args.connections)
    medians = {
        name: statistics.median(run.requests_per_s for run in results)
        for name, results in runs.items()
    }
    plain, guarded = medians.values()
    for name, value in medians.items():
        print(f"median {name:28} {value:8.0f} req/s")
    print(f"guarded / plain: {guarded / plain:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
