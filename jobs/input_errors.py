"""The error every check on a person's input raises (``jobs.creation`` and its helpers)."""

from __future__ import annotations


class JobInputError(ValueError):
    """Input a person must correct; ``field`` names the form field."""

    def __init__(self, field: str, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code
