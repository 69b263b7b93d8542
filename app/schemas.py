"""Request and response bodies. Requests are strict: unknown keys and loose types are refused."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
)

from ml.store import MODEL_NAME

ROW_JSON_SCHEMA: dict[str, Any] = {
    "description": "One row: an object keyed by feature name, or a list in feature order; null "
    "is a missing value, for a model that takes them. GET /models/{name} gives the exact schema "
    "of a model's row.",
    "oneOf": [
        {
            "type": "object",
            "additionalProperties": {"type": ["number", "integer", "string", "boolean", "null"]},
        },
        {"type": "array", "items": {"type": ["number", "integer", "string", "boolean", "null"]}},
    ],
}

# The row's own checks need the model, so they run after the model is known (ml.rows).
Row = Annotated[Any, WithJsonSchema(ROW_JSON_SCHEMA)]

ModelName = Annotated[
    str | None,
    Field(
        pattern=MODEL_NAME.pattern,
        description="Model name; optional when the store holds one model or DEFAULT_MODEL is set.",
    ),
]
Version = Annotated[
    int | None, Field(ge=1, description="Version number; the default version serves if left out.")
]


class PredictRequest(BaseModel):
    """One row to predict."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "iris",
                    "version": 2,
                    "features": {
                        "sepal_length": 5.1,
                        "sepal_width": 3.5,
                        "petal_length": 1.4,
                        "petal_width": 0.2,
                    },
                },
                {"model": "iris", "features": [5.1, 3.5, 1.4, 0.2]},
            ]
        },
    )

    model: ModelName = None
    version: Version = None
    features: Row


class BatchRequest(BaseModel):
    """Many rows to predict, answered in the same order."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"model": "iris", "instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
                {
                    "model": "diabetes_pipeline",
                    "instances": [
                        {
                            "age": 59.0,
                            "sex": "male",
                            "bmi": 32.1,
                            "bp": 101.0,
                            "s1": 157.0,
                            "s2": 93.2,
                            "s3": 38.0,
                            "s4": 4.0,
                            "s5": 4.8598,
                            "s6": 87.0,
                        }
                    ],
                },
            ]
        },
    )

    model: ModelName = None
    version: Version = None
    instances: list[Row] = Field(min_length=1, description="Rows; at most MAX_BATCH_ROWS.")


class PredictResponse(BaseModel):
    """A classifier answers prediction + probabilities; a regressor a prediction (an object by
    target name when it has several targets); an anomaly detector prediction (-1 outlier, 1
    inlier), outlier and score; a clustering model prediction (the cluster) and distances; any
    other model its outputs by name."""

    model: str
    version: int
    prediction: Any = None
    probabilities: dict[str, float] | None = None
    outlier: bool | None = Field(
        None, description="Anomaly detection: whether the row is an outlier"
    )
    score: float | None = Field(
        None, description="Anomaly detection: the decision score; the lower, the more abnormal"
    )
    distances: dict[str, float] | None = Field(
        None, description="Clustering: the distance to each cluster, keyed by cluster index"
    )
    outputs: dict[str, Any] | None = None


class BatchResponse(BaseModel):
    """Predictions in request order, with the same companions as /predict answers, one per row."""

    model: str
    version: int
    predictions: list[Any] | None = None
    probabilities: list[dict[str, float]] | None = None
    outliers: list[bool] | None = None
    scores: list[float] | None = None
    distances: list[dict[str, float]] | None = None
    outputs: dict[str, Any] | None = None


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemError] = Field(
        [], description="The fields at fault, the first MAX_ERRORS_LISTED of them."
    )
    error_count: int = Field(0, description="How many fields are at fault in all.")


class VersionInfo(BaseModel):
    version: int
    state: str = Field(description="LOADING, AVAILABLE, FAILED or UNLOADING")
    error: str | None = None
    samples_checked: int | None = Field(
        None,
        description="Rows of samples.json this version answered as expected before serving "
        "(0 without the file); null while it is not loaded.",
    )
    task: str | None = Field(
        None,
        description="classification, regression, anomaly_detection or clustering; null when "
        "unknown or while the version is not loaded",
    )
    missing_values: bool | None = Field(
        None, description="Whether rows may hold null (missing values); null while not loaded"
    )
    targets: list[str] | None = Field(
        None, description="A regressor's target names, in answer order, when it has several"
    )


class ModelSummary(BaseModel):
    name: str
    default_version: int | None
    version_policy: str | None
    versions: list[VersionInfo]
    error: str | None = Field(None, description="Why model.toml could not be used, if so.")


class ModelList(BaseModel):
    models: list[ModelSummary]


class FeatureInfo(BaseModel):
    name: str
    type: str = Field(description="JSON type: number, integer, string or boolean")


class ModelDetail(ModelSummary):
    version: int = Field(description="The version described below (the default one).")
    task: str | None
    description: str | None = None
    features: list[FeatureInfo]
    labels: list[str] | None = Field(
        description="A classifier's class names as answers give them, in probability order"
    )
    targets: list[str] | None = Field(
        None, description="A regressor's target names, in answer order, when it has several"
    )
    missing_values: bool = Field(False, description="Whether rows may hold null (missing values)")
    outputs: list[str]
    row_schema: dict[str, Any] = Field(description="JSON Schema of one row")


class ShadowReport(BaseModel):
    compared: int
    agreed: int
    disagreed: int
    errors: int
    dropped: int
    agreement: float | None
    agreement_ci95: list[float] | None = Field(description="95% Wilson interval")
    mean_abs_diff: float | None


class PromotionReport(BaseModel):
    version: int = Field(description="the version promoted to default")
    previous: int = Field(description="the default before it, kept loaded for a rollback")
    at: str | None = Field(None, description="when it was promoted (ISO 8601)")
    previous_state: str | None = Field(description="the previous default's state; None if gone")


class RolloutReport(BaseModel):
    """This process's view of a model's rollout, its last promotion and what a rollback
    would restore."""

    model: str
    state: str = Field(description="none, pending, active or halted")
    default_version: int | None
    candidate: int | None = None
    traffic_percent: float | None = None
    shadow_percent: float | None = None
    sticky_header: str | None = None
    halt_reason: str | None = None
    answered: dict[str, int] | None = Field(None, description="requests by answering version")
    shadow: ShadowReport | None = None
    latency_ms: dict[str, dict[str, float] | None] | None = None
    last_promotion: PromotionReport | None = None
    rollback_restores: int | None = Field(
        None,
        description="the default version that would serve everything after "
        "`model-rollout rollback`; None when there is nothing to roll back",
    )
    feedback: dict[str, FeedbackSpans] | None = Field(
        None, description="POST /feedback figures of the default and the candidate, by version"
    )


class Health(BaseModel):
    status: str


class ReloadItem(BaseModel):
    model: str
    version: int | None = Field(description="None when the item is the model's model.toml")
    error: str | None = None


class ReloadResult(BaseModel):
    loaded: list[ReloadItem]
    unloaded: list[ReloadItem]
    failed: list[ReloadItem]


# -- POST /feedback ------------------------------------------------------------------------------

RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]


def _outcome(value: Any) -> str | int | float:
    # One check with one message: a union of strict types would report each member apart.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a class (a string or an integer) or a number, got {value!r}")
    return value


Outcome = Annotated[
    Any,
    PlainValidator(_outcome),
    WithJsonSchema(
        {
            "type": ["string", "integer", "number"],
            "description": "A class, by its name or its value in the model (classifiers), "
            "or a number (regressors)",
        }
    ),
]


class FeedbackItem(BaseModel):
    """The true outcome of one earlier single-row answer."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: RequestId = Field(description="The x-request-id header of the answer")
    actual: Outcome
    version: int | None = Field(None, ge=1, description="The version that answered")
    prediction: Outcome | None = Field(None, description="What the answer predicted")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(pattern=MODEL_NAME.pattern)
    items: list[FeedbackItem] = Field(min_length=1, description="At most FEEDBACK_MAX_ITEMS")


class FeedbackResult(BaseModel):
    request_id: str
    version: int | None
    outcome: str = Field(description="correct, incorrect, scored, unknown or duplicate")


class FeedbackResponse(BaseModel):
    model: str
    scored: int
    ignored: int
    items: list[FeedbackResult]


class FeedbackFigures(BaseModel):
    matched: int
    correct: int | None
    accuracy: float | None
    mean_abs_error: float | None
    window_s: int | None = None


class FeedbackSpans(BaseModel):
    total: FeedbackFigures
    recent: FeedbackFigures


RolloutReport.model_rebuild()  # its feedback figures are declared after it
