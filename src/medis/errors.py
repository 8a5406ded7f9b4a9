"""User-facing errors of the framework.

A :class:`MedisError` is a user mistake (a missing folder, an unpaired image, a bad config value):
its message is one line that names the culprit (file, key or value). Command-line entry points
(the synthetic-data CLI, ``train.py``, ``attack.py``) catch it, also when Hydra's ``instantiate``
wraps it or a data loader worker re-raises it, and so an OmegaConf error (a missing mandatory
value), print ``error: <message>`` and exit with status 2, without a traceback; any other exception
is our own bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

from omegaconf.errors import OmegaConfBaseException

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


def user_error_line(err: BaseException) -> str | None:
    """The one-line message of a user error found in ``err``'s cause chain, else ``None``."""
    seen = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MedisError):
            return one_line(current)
        if isinstance(current, OmegaConfBaseException):
            return "config: " + str(current).strip().splitlines()[0]
        current = current.__cause__ or current.__context__
    return None


def exit_on_user_error(func: F) -> F:
    """Wrap a CLI ``main`` or Hydra task function: a user error becomes ``error: <line>`` on stderr
    and exit status 2; any other exception propagates with its traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - re-raised unless it is a user error
            line = user_error_line(err)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
