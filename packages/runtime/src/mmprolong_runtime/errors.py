"""The toolkit's error for bad input, which every package raises or subclasses."""

from __future__ import annotations


class InputError(ValueError):
    """Input the user can fix: a bad value, a folder that is not a pool or run, a missing or
    malformed file. The message names the input. The CLIs print it as one line with exit
    code 2, where any other exception is a bug and shows its traceback. A ``ValueError`` so
    that code catching bad values keeps catching it. ``exit_code`` lets a CLI keep the code
    it has always used for such errors."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
