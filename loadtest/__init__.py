"""Load-test any model on any running server before a release (`model-loadtest`).

Rows come from the model's own description (`GET /models/{name}`) and its version's
`samples.json`; Locust drives the load; a concurrency sweep, an optional side-by-side comparison
with another version, Markdown/CSV reports, charts and budgets turn it into a release gate.
"""
