"""Schema-driven fuzzing: schemathesis reads the served OpenAPI document of the real app and
sends every operation in it (the Open Inference Protocol's included) cases that fit the schema
and cases that do not. Whatever it sends, the app answers 2xx or 4xx, never 5xx, with the error
body of the route (problem+json, or `{"error"}` under /v2), no traceback and no file path, and it
still answers a valid POST /predict with 200 afterwards.

The app runs in-process over schemathesis's ASGI transport, which runs the app's lifespan
itself: the first request starts it, the `ready` fixture waits until the store is loaded, and
schemathesis's pytest plugin ends it after each test. Cases are generated in both modes
(positive and negative) plus schemathesis's coverage phase, derandomized; the `tally` fixture
counts them per operation and, once the module's cases are done, prints the counts and fails when
an operation got too few (in whatever order the tests ran, and with any subset selected).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fuzz_support import (
    ADMIN_TOKEN,
    VALID_PREDICT,
    Tally,
    app_fixtures,
    check_answer,
    headers_of,
    store_secrets,
)
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from app.config import Settings
from app.main import create_app

MAX_EXAMPLES = 100
MODELS = ("iris", "diabetes", "diabetes_pipeline")
# The coverage phase alone gives an operation without parameters about ten cases; one with a
# path parameter or a body gets a hundred or more. The README quotes the total floor.
MIN_CASES = 10
MIN_CASES_WITH_INPUT = 100
MIN_TOTAL = 1_400


# The document schemathesis reads: the app's own, from an app that is never started (its lifespan
# would load a store at collection time). The fixture checks that the app under test serves the
# same document at /openapi.json, and every case is sent to that app.
DOCUMENT = create_app(
    Settings(_env_file=None, model_store=Path("unused"), admin_token=ADMIN_TOKEN)  # type: ignore[call-arg]
).api.openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    database="none",
)


class Served:
    """The app under test, over a copy of the demo store."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.secrets = store_secrets(store)
        self.app = create_app(
            Settings(  # type: ignore[call-arg]
                _env_file=None,
                model_store=store,
                poll_interval_s=0,
                default_model=None,
                admin_token=ADMIN_TOKEN,
                grpc_port=0,
            )
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return schema[path][method].Case(**kwargs).call(app=self.app)

    def wait_ready(self) -> None:
        """Starts the lifespan (the first request does) and waits until the store is in."""
        deadline = time.monotonic() + app_fixtures.READY_TIMEOUT_S
        while (response := self.call("GET", "/health/ready")).status_code != 200:
            assert time.monotonic() < deadline, response.text
            time.sleep(0.02)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    return Served(app_fixtures.copy_store(tmp_path_factory.mktemp("fuzz") / "store"))


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    """Counts the cases per operation; checks the counts once the module's cases are done."""
    counted = Tally()
    yield counted
    print("\n" + counted.report("schemathesis"))
    for operation in schema.get_all_operations():
        label = operation.ok().label
        if label not in counted.counts:
            continue  # deselected
        has_input = "{" in label or label.startswith("POST /predict")
        floor = MIN_CASES_WITH_INPUT if has_input else MIN_CASES
        assert counted.counts[label] >= floor, f"{label}: {counted.counts[label]} cases"
    if len(counted.counts) == len(list(schema.get_all_operations())):
        assert counted.total >= MIN_TOTAL, counted.report("schemathesis")


@pytest.fixture
def ready(served: Served) -> Served:
    """The app with its lifespan running; schemathesis's plugin ends it after each test."""
    served.wait_ready()
    return served


def test_the_document_is_the_served_one(ready: Served) -> None:
    """The cases below come from the document that the app under test serves."""
    served = schemathesis.openapi.from_asgi("/openapi.json", ready.app)
    assert served.raw_schema == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # `ready` runs once per operation on purpose: it starts the lifespan that the cases share.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_every_operation_answers_by_the_rules(case: Any, ready: Served, tally: Tally) -> None:
    label = case.operation.label
    tally.add(label)
    n = tally.counts[label]
    extra: dict[str, str] = {}
    params = case.path_parameters
    if params and "name" in params and n % 3 == 0:
        # Random names meet a 404 first: a third of the cases name a model that serves, and half
        # of those a version of it that serves.
        params["name"] = MODELS[(n // 3) % len(MODELS)]
        if "version" in params and n % 2 == 0:
            params["version"] = "1"
    if case.operation.path.startswith("/admin/") and n % 2 == 0:
        extra["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    response = case.call(headers=extra, app=ready.app)
    check_answer(
        case.formatted_path,
        response.status_code,
        headers_of(response.headers),
        response.content,
        ready.secrets,
    )
    after = ready.call("POST", "/predict", body=VALID_PREDICT, media_type="application/json")
    assert after.status_code == 200, f"after {label}: {after.status_code} {after.text[:300]}"
