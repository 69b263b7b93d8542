"""`model.toml`: the settings a data scientist can give one model."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ml.files import CONFIG_MAX_BYTES, read_text

CONFIG_FILE = "model.toml"


class ConfigError(Exception):
    """`model.toml` cannot be read or holds a key or value we do not know."""


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """Which versions on disk are served: the newest N, all of them, or a fixed list."""

    kind: Literal["latest", "all", "specific"]
    count: int = 1
    versions: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        kind, _, arg = text.strip().partition(":")
        try:
            if kind == "all" and not arg:
                return cls("all")
            if kind == "latest":
                count = int(arg) if arg else 1
                if count >= 1:
                    return cls("latest", count=count)
            if kind == "specific":
                versions = frozenset(int(v) for v in arg.split(","))
                if versions and min(versions) >= 1:
                    return cls("specific", versions=versions)
        except ValueError:
            pass
        raise ValueError(
            f"version_policy {text!r} is not one of 'latest:N', 'all', 'specific:V1,V2,...'"
        )

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest:{self.count}"
        if self.kind == "specific":
            return "specific:" + ",".join(str(v) for v in sorted(self.versions))
        return "all"


class BatchingConfig(BaseModel):
    """`[batching]`: coalesce concurrent single-row requests into one session run."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_batch_size: int = Field(64, ge=1, le=100_000)
    max_delay_ms: float = Field(2.0, ge=0, le=1_000)
    # Rows waiting beyond this are refused with 503 rather than left to pile up.
    max_queue_size: int = Field(1024, ge=1, le=1_000_000)


class RuntimeConfig(BaseModel):
    """`[onnxruntime]`: session options."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # One thread by default: onnxruntime's pool fights the server's own threads for the cores.
    intra_op_num_threads: int = Field(1, ge=0, le=256)


class RolloutConfig(BaseModel):
    """`[rollout]`: a candidate version tried on a share of live traffic."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    candidate: int = Field(ge=1)
    # Of requests that name no version, the share the candidate answers.
    traffic_percent: float = Field(0.0, ge=0, le=100)
    # Of requests the default answers, the share the candidate also scores, off the request path.
    shadow_percent: float = Field(0.0, ge=0, le=100)
    sticky_header: str | None = Field(None, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
    min_agreement: float | None = Field(None, ge=0, le=1)
    max_error_rate: float | None = Field(None, ge=0, le=1)
    window: int = Field(500, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _halts_can_act(self) -> RolloutConfig:
        # A halt that nothing can ever trip is refused rather than accepted and left idle:
        # the data scientist believes the rollout is guarded when it is not.
        if self.min_agreement is not None and not self.shadow_percent:
            raise ValueError(
                "min_agreement needs shadow_percent above 0: agreement is measured on rows the "
                "candidate scores in the shadow of the default, and with shadow_percent 0 there "
                "are none, so this halt could never act"
            )
        if self.max_error_rate is not None and not (self.traffic_percent or self.shadow_percent):
            raise ValueError(
                "max_error_rate needs traffic_percent or shadow_percent above 0: the error rate "
                "is measured on the candidate's runs, and with both at 0 it never runs, so this "
                "halt could never act"
            )
        return self


class PromotionConfig(BaseModel):
    """`[promotion]`: the last promotion, written by `model-rollout promote`. The version that
    was the default before it stays loaded, whatever the version policy, so that
    `model-rollout rollback` can restore it at once; `model-rollout retire` lets it go."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    version: int = Field(ge=1)
    previous: int = Field(ge=1)
    at: datetime | None = None


class PredictionLogConfig(BaseModel):
    """`[prediction_log]`: this model's share of the prediction log, over the server's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    percent: float | None = Field(None, ge=0, le=100)
    key_header: str | None = Field(None, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")


class ModelConfig(BaseModel):
    """The whole of `model.toml`; every key is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    default_version: int | None = Field(None, ge=1)
    version_policy: VersionPolicy = VersionPolicy("latest", count=1)
    batching: BatchingConfig | None = None
    onnxruntime: RuntimeConfig = RuntimeConfig()
    rollout: RolloutConfig | None = None
    promotion: PromotionConfig | None = None
    prediction_log: PredictionLogConfig | None = None

    @model_validator(mode="after")
    def _candidate_is_not_the_default(self) -> ModelConfig:
        if self.rollout is not None and self.rollout.candidate == self.default_version:
            raise ValueError(
                f"rollout.candidate {self.rollout.candidate} is the default_version: a rollout "
                "tries a version other than the one that serves by default"
            )
        return self

    @field_validator("version_policy", mode="plain")
    @classmethod
    def _parse_policy(cls, value: object) -> VersionPolicy:
        if isinstance(value, VersionPolicy):
            return value
        if not isinstance(value, str):
            raise ValueError("version_policy must be a string such as 'latest:2'")
        return VersionPolicy.parse(value)


def read_model_config(model_dir: Path, within: Path | None = None) -> ModelConfig:
    """Read `model_dir/model.toml`; a missing file means every default. `within`: the store,
    which a link may not leave."""
    path = model_dir / CONFIG_FILE
    try:
        text = read_text(path, within=within, limit=CONFIG_MAX_BYTES)
    except FileNotFoundError:
        return ModelConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{CONFIG_FILE}: cannot read: {exc}") from exc
    try:
        return ModelConfig.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG_FILE}: bad TOML syntax: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"{CONFIG_FILE}: nested too deeply to read") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{CONFIG_FILE}: {problems}") from exc
