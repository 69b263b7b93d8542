"""GET /models/{name}/rollout, and the status page's view of it: built from parts, each added on
its own (the rollout's split and shadow counts, the last promotion, what a rollback restores), so
a new measure joins as one more part."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ml.rollout import RolloutState

if TYPE_CHECKING:
    from ml.registry import ModelEntry


def describe_rollout(entry: ModelEntry) -> dict[str, Any]:
    """GET /models/{name}/rollout: the rollout's own report (when there is one), the last
    promotion, and the default a rollback would restore. Each part is added on its own, so a
    new measure joins without touching the others."""
    report: dict[str, Any] = {
        "model": entry.name,
        "state": RolloutState.NONE.value,
        "default_version": entry.default_version,
    }
    rollout = entry.rollout
    if rollout is not None:
        report.update(rollout.report(entry.default_version, entry.available(rollout.candidate)))
    report["last_promotion"] = _last_promotion(entry)
    report["rollback_restores"] = _rollback_restores(entry)
    return report


def _last_promotion(entry: ModelEntry) -> dict[str, Any] | None:
    promotion = entry.config.promotion if entry.config else None
    if promotion is None:
        return None
    previous = entry.versions.get(promotion.previous)
    return {
        "version": promotion.version,
        "previous": promotion.previous,
        "at": promotion.at.isoformat() if promotion.at else None,
        "previous_state": previous.state.value if previous else None,
    }


def _rollback_restores(entry: ModelEntry) -> int | None:
    """The default that `model-rollout rollback` leaves serving everything: the current one
    while a rollout runs (it only ends the rollout), else the one before the last promotion."""
    if entry.rollout is not None:
        return entry.default_version
    promotion = entry.config.promotion if entry.config else None
    return promotion.previous if promotion else None
