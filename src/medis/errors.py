"""User-facing errors of the framework.

A :class:`MedisError` is a user mistake (a missing folder, an unpaired image, a bad config value):
its message is one line that names the culprit (file, key or value). Command-line entry points
catch it, print ``error: <message>`` and exit non-zero, without a traceback; any other exception is
our own bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class MedisError(Exception):
    """Base class of user-facing errors: one line, naming the file, key or value at fault."""


class DataError(MedisError):
    """A data set, an image or a mask cannot be used as given."""


class ConfigError(MedisError):
    """A configuration value is missing or out of its valid range."""


def one_line(err: BaseException) -> str:
    """The user-facing line of an error.

    A DataLoader worker re-raises our error in the main process with the worker's whole traceback
    as its message ("Caught DataError in DataLoader worker process 0. Original Traceback ...");
    the line that matters is the last one, ``medis.errors.DataError: <message>``.
    """
    text = str(err).strip()
    if "Original Traceback" not in text:
        return text
    last = text.splitlines()[-1].strip()
    name = f"{type(err).__module__}.{type(err).__qualname__}: "
    return last[len(name):] if last.startswith(name) else last


def exit_on_user_error(func: F) -> F:
    """Wrap a CLI ``main``: a :class:`MedisError` becomes ``error: ...`` on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except MedisError as err:
            print(f"error: {one_line(err)}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
