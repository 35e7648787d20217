"""A failure already phrased for the user: what went wrong (naming the file, field, row or run) and what to
do about it. Raised anywhere; the engine sends it as an `Error` event, the CLI prints it and exits."""

from __future__ import annotations


class UserError(Exception):
    def __init__(self, type_: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.type = type_
        """A short kind (config, data, bad_run, oom, ...): the UI and the CLI's exit code follow it."""
        self.message = message
        self.hint = hint
