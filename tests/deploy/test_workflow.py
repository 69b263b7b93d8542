""".github/workflows/ci.yml runs what CI runs: .ci/run, on pushes and pull requests."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def test_workflow_runs_ci_entry_point_on_pushes_and_pull_requests() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    runs = [step["run"] for step in steps if "run" in step]
    # One command, the same as CI's: the test suite and the latency guard stay in .ci/run.
    assert any(run.strip() == "bash .ci/run" for run in runs), runs
    assert (REPO / ".ci" / "run").exists()
    pythons = [
        step["with"]["python-version"] for step in steps if "setup-python" in step.get("uses", "")
    ]
    assert pythons == ["3.11"], ".ci/run calls python3.11"
