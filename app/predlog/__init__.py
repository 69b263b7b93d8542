"""The prediction log: a sampled record of what each model received and answered, written off
the request path to rotated JSONL files and, optionally, as CloudEvents over HTTP.

    edge / gRPC call ends -> PredictionLog.finish (on the loop: sample, queue or drop)
        -> Sink thread (one per sink): Event -> JSON (events.py) -> file (files.py)
                                                                  or HTTP (cloudevents.py)
"""
