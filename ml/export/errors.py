"""The export tool's one error type: what failed, why, and what to try, in a few lines."""

from __future__ import annotations


class ExportError(Exception):
    """Export refused: bad arguments, failed conversion or parity check, or a write error."""
