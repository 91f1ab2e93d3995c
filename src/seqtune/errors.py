"""The one exception type that reaches users as a clean one-line message."""

from __future__ import annotations


class SeqtuneError(Exception):
    """A problem with the user's input: printed as one line by the CLI, exit code 2, no traceback.

    Messages follow "what was expected, what was found, the fix", and name the file and row when there is one.
    """


class ConfigError(SeqtuneError):
    """Invalid configuration: unknown keys, bad values. Carries every problem found, not just the first."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))
