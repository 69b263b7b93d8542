"""`inference.GRPCInferenceService`: the Open Inference Protocol's calls, converted from and to
protobuf messages and answered by the dataplane (app.dataplane), as HTTP's are.

A call that names no `model_version` is answered by the default version, or by the model's
rollout (traffic split, sticky routing by the metadata key named `sticky_header`), as
/predict is. Health calls answer true or false; a model that does not exist is NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from app.dataplane.checks import invalid
from app.dataplane.infer import infer_request, offload, output_bytes
from app.dataplane.metadata import SERVER_NAME, model_metadata
from app.dataplane.resolve import readiness
from app.grpc import tensors
from app.grpc.calls import CallLog, Tags
from app.grpc.proto import grpc_predict_v2_pb2 as pb
from app.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from app.grpc.status import grpc_status
from app.runtime import Runtime
from ml.served import SERVED, Served

Answer = TypeVar("Answer")
Context = grpc.aio.ServicerContext[Any, Any]
SERVICE = "inference.GRPCInferenceService"


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The service over the app's runtime (its registry, settings and draining flag)."""

    def __init__(self, runtime: Runtime, server_version: str, calls: CallLog) -> None:
        self.runtime = runtime
        self.server_version = server_version
        self.calls = calls

    async def _answer(
        self,
        context: Context,
        method: str,
        request: Message | None,
        handler: Callable[[Tags], Awaitable[Answer]],
    ) -> Answer:
        """Run `handler` within the request timeout; an error becomes its status code. Every
        call is counted, timed and logged with its request id. `request` is None when its bytes
        were not a message of the method's type (server.py)."""
        started = time.perf_counter()
        tags = Tags(self.calls.request_id(context))
        try:
            if request is None:
                raise invalid(f"the request is not a valid {method}Request message")
            async with asyncio.timeout(self.runtime.settings.request_timeout_s):
                answer = await handler(tags)
        except TimeoutError:
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            message = f"no answer within {self.runtime.settings.request_timeout_s:g} s"
        except Exception as exc:  # every error becomes a status; grpc_status logs unexpected ones
            code, message = grpc_status(exc)
        else:
            context.set_trailing_metadata(tags.metadata())
            self.calls.record(context, f"/{SERVICE}/{method}", tags, grpc.StatusCode.OK, started)
            return answer
        self.calls.record(context, f"/{SERVICE}/{method}", tags, code, started)
        await context.abort(code, message, tags.metadata())
        raise AssertionError("abort() raises")  # pragma: no cover

    # Method names are the protocol's.
    async def ServerLive(
        self, request: pb.ServerLiveRequest | None, context: Context
    ) -> pb.ServerLiveResponse:
        async def live(tags: Tags) -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=True)

        return await self._answer(context, "ServerLive", request, live)

    async def ServerReady(
        self, request: pb.ServerReadyRequest | None, context: Context
    ) -> pb.ServerReadyResponse:
        async def ready(tags: Tags) -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=self.runtime.not_ready_reason() is None)

        return await self._answer(context, "ServerReady", request, ready)

    async def ModelReady(
        self, request: pb.ModelReadyRequest | None, context: Context
    ) -> pb.ModelReadyResponse:
        async def ready(tags: Tags) -> pb.ModelReadyResponse:
            found = readiness(self.runtime.registry, request.name, request.version or None)
            if found.model is None:  # the protocol's "false"; an unknown model stays NOT_FOUND
                return pb.ModelReadyResponse(ready=False)
            tags.model, tags.version = found.model.name, str(found.model.version)
            return pb.ModelReadyResponse(ready=True)

        return await self._answer(context, "ModelReady", request, ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest | None, context: Context
    ) -> pb.ServerMetadataResponse:
        async def metadata(tags: Tags) -> pb.ServerMetadataResponse:
            # The extensions listed over HTTP (binary tensor data) are HTTP's own.
            return pb.ServerMetadataResponse(name=SERVER_NAME, version=self.server_version)

        return await self._answer(context, "ServerMetadata", request, metadata)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest | None, context: Context
    ) -> pb.ModelMetadataResponse:
        async def metadata(tags: Tags) -> pb.ModelMetadataResponse:
            registry = self.runtime.registry
            about = model_metadata(registry, request.name, request.version or None)
            tags.model = about["name"]
            return pb.ModelMetadataResponse(
                name=about["name"],
                versions=about["versions"],
                platform=about["platform"],
                inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in about["inputs"]],
                outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in about["outputs"]],
            )

        return await self._answer(context, "ModelMetadata", request, metadata)

    async def ModelInfer(
        self, request: pb.ModelInferRequest | None, context: Context
    ) -> pb.ModelInferResponse:
        async def infer(tags: Tags) -> pb.ModelInferResponse:
            log = self.calls.prediction_log
            if log is not None:
                tags.draw = log.draw()
                if tags.draw is not None:  # None: past every model's share, nothing to note
                    tags.note = Served()  # filled by the model that answers (ml.served)
                    SERVED.set(tags.note)
            return await self._infer(request, context, tags)

        return await self._answer(context, "ModelInfer", request, infer)

    async def _infer(
        self, request: pb.ModelInferRequest, context: Context, tags: Tags
    ) -> pb.ModelInferResponse:
        max_rows = self.runtime.settings.max_batch_rows
        done = await infer_request(
            self.runtime.registry,
            request.model_name,
            request.model_version or None,
            sum(len(raw) for raw in request.raw_input_contents),
            functools.partial(tensors.decode_call, request, max_rows),
            # A call naming no version follows the model's rollout (sticky key from metadata).
            lambda key: self.calls.metadata_value(context, key),
        )
        model, outputs = done.model, [name for name, _ in done.outputs]
        tags.model, tags.version = model.name, str(model.version)
        return await offload(
            output_bytes(done.raw, outputs),
            tensors.encode_response, model.name, model.version, request.id, done.raw, outputs,
        )  # fmt: skip
