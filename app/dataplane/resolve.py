"""The model version a request names, and whether it serves: for HTTP paths and gRPC fields
alike. An unknown model or version is ModelNotFound; one that does not serve now, ModelNotReady."""

from __future__ import annotations

from dataclasses import dataclass

from ml.errors import ModelNotFound, ModelNotReady
from ml.model import LoadedModel
from ml.registry import ModelRegistry

# A version is a positive integer of at most this many digits (an int64 holds 18).
MAX_VERSION_DIGITS = 18


def version_number(registry: ModelRegistry, name: str, version: str | None) -> int | None:
    """The version asked for as a number (None: the default); ModelNotFound when it cannot be
    one, naming an unknown model first."""
    if version is None:
        return None
    digits = version.lstrip("0")
    if not (version.isascii() and version.isdigit() and 0 < len(digits) <= MAX_VERSION_DIGITS):
        registry.get(name)  # an unknown model is named as such first
        shown = version if len(version) <= 20 else f"{version[:20]}... ({len(version)} characters)"
        raise ModelNotFound(f"model {name!r} has no version {shown!r}")
    return int(digits)


def resolve(registry: ModelRegistry, name: str, version: str | None) -> LoadedModel:
    """The version asked for: ModelNotFound when unknown, ModelNotReady when it does not serve."""
    return registry.resolve(name, version_number(registry, name, version))


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether a version serves: the model when it does, else why not (the protocol's "not
    ready", which is not an error)."""

    model: LoadedModel | None
    reason: str = ""


def readiness(registry: ModelRegistry, name: str, version: str | None) -> Readiness:
    """Whether the version asked for serves; an unknown model or version stays ModelNotFound."""
    try:
        return Readiness(resolve(registry, name, version))
    except ModelNotReady as exc:
        return Readiness(None, exc.detail)
