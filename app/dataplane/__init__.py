"""What every protocol edge shares: the Open Inference Protocol's steps, written once.

The HTTP V2 route (answered by the edge), the FastAPI V2 routes and the gRPC servicer convert
their wire format to and from these calls, and nothing else:

    resolve    the model version a request names (404 unknown, 503 not serving), readiness
    metadata   the server's and a model's metadata
    checks     the request checks both protocols make: rows, shapes, names given twice,
               parameters this server does not support
    binary     the binary tensor format: raw little-endian tensors, BYTES with length prefixes,
               and the HTTP body split by Inference-Header-Content-Length
    infer      the outputs asked for, the run through the registry (rollouts included), and the
               rule that moves large decodes and encodes off the event loop

Errors are the model layer's (ml.errors), which app.errors turns into each protocol's answer.
Nothing here imports FastAPI, Starlette or grpc.
"""
