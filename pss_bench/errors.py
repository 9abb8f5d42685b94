"""Typed exceptions raised on bad user input.

The CLI turns every :class:`PssBenchError` into one line on stderr and exit
code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class PssBenchError(Exception):
    """Base class for errors caused by the user's data or arguments."""


class FormatError(PssBenchError):
    """A file does not follow the format it claims to follow."""


class GroundTruthFormatError(FormatError):
    """The ground truth (JSON or PNG) is malformed or inconsistent."""


class PredictionFormatError(FormatError):
    """A prediction dump (JSON, PNG, embeddings) is malformed or inconsistent."""


class UnsafePathError(PssBenchError):
    """A file name from a JSON would resolve outside its folder."""


class DiskFullError(PssBenchError, OSError):
    """The disk (or quota) filled up while writing an output; nothing partial was left.

    Also an :class:`OSError` (``errno`` ``ENOSPC``), so code that tolerates a
    failed optional write (caches) still catches it.
    """

    def __init__(self, target, what: str = "disk full") -> None:
        import errno

        super().__init__(errno.ENOSPC, f"{what} while writing {target}")
        self.target = target
        self.what = what

    def __str__(self) -> str:
        return f"{self.what} while writing {self.target}"

    def __reduce__(self):  # OSError's would rebuild it from (errno, message)
        return type(self), (self.target, self.what)


@contextmanager
def blamed_on(error: type[PssBenchError], causes: tuple[type[PssBenchError], ...] | None = None) -> Iterator[None]:
    """Raises a format error from inside the block as ``error``, with the same message.

    Format readers do not know whose file they read; the caller does, and
    names the side at fault (:class:`GroundTruthFormatError` or
    :class:`PredictionFormatError`) so that the CLI can say which input to
    fix. An error that is already an ``error`` passes unchanged.

    Args:
        error: the type to raise.
        causes: what to re-type; :class:`FormatError` unless given (for
            example ``(UnsafePathError,)`` for a name taken from a prediction).
    """
    try:
        yield
    except causes or (FormatError,) as exc:
        if isinstance(exc, error):
            raise
        raise error(str(exc)) from None
