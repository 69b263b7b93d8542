"""Servers to compare against, run by benchmarks.compare. Not part of the product."""
