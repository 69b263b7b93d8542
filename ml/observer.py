"""What the model layer reports as it works; the HTTP layer turns it into metrics."""

from __future__ import annotations

from typing import Protocol


class ServingObserver(Protocol):
    """Receives events from loaded versions, batchers and the registry, always on the event
    loop's thread (implementations need no locks)."""

    def ran(self, model: str, version: int, rows: int, seconds: float) -> None:
        """One session run of `rows` rows took `seconds`."""

    def queued(self, model: str, version: int, depth: int) -> None:
        """The batching queue of a version now holds `depth` rows."""

    def load_failed(self, model: str) -> None:
        """A version of `model` failed to load or to warm up."""

    def versions_serving(self, model: str, count: int) -> None:
        """`model` now serves `count` versions."""

    def rollout_answered(self, model: str, version: int) -> None:
        """A request naming no version of a model with a rollout was answered by `version`."""

    def shadow_compared(self, model: str, candidate: int, outcome: str, rows: int) -> None:
        """`rows` shadow rows of a rollout ended as `outcome`: agreed, disagreed, error or
        dropped."""

    def rollout_state_changed(self, model: str, state: str) -> None:
        """The rollout of `model` is now in `state`: none, pending, active or halted."""
