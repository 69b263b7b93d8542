"""The grpc.aio server, started and stopped by the app's lifespan on HOST:GRPC_PORT.

Besides the inference service it serves the standard `grpc.health.v1.Health` (for Kubernetes
`grpc` probes: SERVING while /health/ready is 200, NOT_SERVING before and while draining) and
server reflection (so `grpcurl list` works). Every worker process binds the same port
(SO_REUSEPORT), and the kernel spreads connections over them. At most
GRPC_MAX_CONCURRENT_CALLS inference calls run at a time (CallGate). From SIGTERM on, new inference
calls are UNAVAILABLE, and those in flight finish, for up to DRAIN_TIMEOUT_S. The health calls
(ServerLive, ServerReady, ModelReady) pass the gate: a full or draining server still answers its
probes, as HTTP's /health routes do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from app.grpc.calls import CallLog, Tags
from app.grpc.proto import grpc_predict_v2_pb2 as pb
from app.grpc.servicer import SERVICE, InferenceServicer
from app.runtime import Runtime

log = logging.getLogger(__name__)

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# How often the health service's statuses follow readiness (what Watch streams report).
HEALTH_REFRESH_S = 0.5


def message_limit(runtime: Runtime) -> int:
    """GRPC_MAX_MESSAGE_BYTES, or MAX_BODY_BYTES when unset."""
    settings = runtime.settings
    limit: int = settings.grpc_max_message_bytes or settings.max_body_bytes
    return limit


# Calls that may wait for the event loop, per call GRPC_MAX_CONCURRENT_CALLS lets in.
PENDING_PER_CALL = 16


def pending_limit(runtime: Runtime) -> int:
    """How many arrived calls grpc may hold before the event loop takes them up."""
    return max(10_000, PENDING_PER_CALL * runtime.settings.grpc_max_concurrent_calls)


def _reflection_pool() -> descriptor_pool.DescriptorPool:
    """The files that reflection describes. The inference service's descriptors live in a pool
    of their own (app/grpc/proto/regenerate.py), so reflection gets one with all three."""
    pool = descriptor_pool.DescriptorPool()
    for module in (pb, health_pb2, reflection_pb2):
        file = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file)
        pool.Add(file)
    return pool


def _lenient(message_type: type[Message]) -> Callable[[bytes], Message | None]:
    """A request deserializer that gives None for bytes that are not a message of the type, so
    that the servicer answers INVALID_ARGUMENT (grpc's own answer to a failed parse is an
    INTERNAL error that blames the server)."""

    def parse(data: bytes) -> Message | None:
        try:
            return message_type.FromString(data)
        except DecodeError:
            return None

    return parse


Behaviour = Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], Awaitable[Any]]

# The service's health calls: cheap, and what probes ask, so the gate lets them through (a
# probe turned away for load would have the orchestrator restart a busy server).
PROBES = frozenset({"ServerLive", "ServerReady", "ModelReady"})


class CallGate:
    """Lets in at most GRPC_MAX_CONCURRENT_CALLS inference calls at a time, and none once
    SIGTERM has come: a call turned away is RESOURCE_EXHAUSTED (or UNAVAILABLE), counted in
    `model_server_refused_total` and the requests' metrics, and logged, as every call is.
    Without a limit of its own, grpc queues calls without bound, and callers see theirs end
    CANCELLED or past their deadline, unseen by the service. Health calls (PROBES) pass: they
    answer for themselves (ServerReady is false while draining)."""

    def __init__(self, runtime: Runtime, calls: CallLog) -> None:
        self.runtime = runtime
        self.calls = calls
        self.limit = runtime.settings.grpc_max_concurrent_calls
        self.in_flight = 0

    def guard(self, name: str, behaviour: Behaviour) -> Behaviour:
        if name in PROBES:
            return behaviour
        route = f"/{SERVICE}/{name}"

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if self.runtime.draining or self.in_flight >= self.limit:
                await self._refuse(route, context)
            self.in_flight += 1
            try:
                return await behaviour(request, context)
            finally:
                self.in_flight -= 1

        return guarded

    async def _refuse(self, route: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        started = time.perf_counter()
        if self.runtime.draining:
            code, reason = grpc.StatusCode.UNAVAILABLE, "draining"
            message = "the server is shutting down; call another replica"
        else:
            code, reason = grpc.StatusCode.RESOURCE_EXHAUSTED, "concurrency"
            message = f"{self.limit} calls in progress (GRPC_MAX_CONCURRENT_CALLS); try again"
        tags = Tags(self.calls.request_id(context))
        self.runtime.metrics.refused("grpc", reason)
        self.calls.record(context, route, tags, code, started)
        await context.abort(code, message, tags.metadata())


def _inference_handlers(servicer: InferenceServicer, gate: CallGate) -> grpc.GenericRpcHandler:
    """The service's methods, as the generated registration has them, with lenient parsing,
    behind the gate."""
    service = pb.DESCRIPTOR.services_by_name[SERVICE.rsplit(".", 1)[1]]
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            gate.guard(method.name, getattr(servicer, method.name)),
            request_deserializer=_lenient(getattr(pb, method.input_type.name)),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
        for method in service.methods
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


class ReadinessHealth(health.aio.HealthServicer):
    """grpc.health.v1.Health whose statuses follow readiness: brought up to date by every
    Check, and every HEALTH_REFRESH_S for the Watch streams."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime

    async def refresh(self) -> None:
        serving = self.runtime.not_ready_reason() is None
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE):
            await self.set(service, status)

    async def Check(  # the protocol's method name
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        await self.refresh()
        return await super().Check(request, context)

    async def follow(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(HEALTH_REFRESH_S)


@contextlib.asynccontextmanager
async def serving_grpc(
    runtime: Runtime, server_version: str
) -> AsyncIterator[grpc.aio.Server | None]:
    """Serve gRPC while the block runs (nothing when GRPC_PORT is 0)."""
    settings = runtime.settings
    if settings.grpc_port == 0:
        yield None
        return
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", message_limit(runtime)),
            ("grpc.max_send_message_length", -1),  # answers are bounded by MAX_BATCH_ROWS
            ("grpc.so_reuseport", 1),
            # Calls that have arrived but wait for the event loop to take them up: past grpc's
            # own bound (1,000) it cancels them, unseen by the service and its metrics. Ours is
            # far above GRPC_MAX_CONCURRENT_CALLS, so that the gate answers the excess.
            ("grpc.server.max_pending_requests", pending_limit(runtime)),
            ("grpc.server.max_pending_requests_hard_limit", pending_limit(runtime)),
        ]
    )
    calls = CallLog(runtime.metrics, settings.access_log, runtime.prediction_log)
    server.add_generic_rpc_handlers(
        (
            _inference_handlers(
                InferenceServicer(runtime, server_version, calls), CallGate(runtime, calls)
            ),
        )
    )
    health_servicer = ReadinessHealth(runtime)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server, _reflection_pool()
    )
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{settings.grpc_port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise RuntimeError(f"cannot listen for gRPC on {address} (GRPC_PORT): {exc}") from exc
    if not bound:
        raise RuntimeError(f"cannot listen for gRPC on {address} (GRPC_PORT)")
    await server.start()
    follower = asyncio.get_running_loop().create_task(health_servicer.follow())
    log.info("gRPC (Open Inference Protocol) on %s", address)
    try:
        yield server
    finally:
        follower.cancel()
        await health_servicer.enter_graceful_shutdown()
        # New calls are refused from here; those in flight finish within the grace period.
        await server.stop(settings.drain_timeout_s)
        with contextlib.suppress(asyncio.CancelledError):
            await follower
