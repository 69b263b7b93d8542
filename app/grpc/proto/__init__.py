"""KServe's Open Inference Protocol definition and its generated modules (regenerate.py)."""
