"""The prediction log: a sampled record of what each model received and answered, written off
the request path to rotated JSONL files and, optionally, as CloudEvents over HTTP.

    edge / gRPC call ends -> PredictionLog.finish (on the loop: sample, set aside or drop)
        -> formatter task (on the loop, between requests): Event -> JSON (events.py)
        -> one thread per sink, behind a bounded queue: file (files.py), HTTP (cloudevents.py)
"""
