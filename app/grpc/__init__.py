"""The Open Inference Protocol (KServe V2) over gRPC, served by the same process as HTTP.

`proto/` holds KServe's `grpc_predict_v2.proto` and the modules generated from it; `server`
starts and stops the grpc.aio server in the app's lifespan; `servicer` answers its calls through
the registry; `tensors` turns protocol tensors into numpy arrays and back; `status` maps errors
to gRPC status codes.
"""
