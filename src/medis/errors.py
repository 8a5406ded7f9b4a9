"""User-facing errors of the framework.

A :class:`MedisError` is a user mistake (a missing folder, an unpaired image, a bad config value):
its message is one line that names the culprit (file, key or value). Command-line entry points
(the synthetic-data CLI, ``train.py``, ``attack.py``) catch it, also when Hydra's ``instantiate``
wraps it or a data loader worker re-raises it, and so an OmegaConf error (a missing mandatory
value), Lightning's ``MisconfigurationException`` (a trainer setting this machine cannot honour),
Hydra's own composition errors (an unknown key or option, an override it cannot parse) and an
:class:`OSError` of the environment on a named file (no permission, read-only or full disk), print
``error: <message>`` and exit with status 2, without a traceback; any other exception is our own bug
and keeps its traceback.
"""

from __future__ import annotations

import errno
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


ENVIRONMENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
                                errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG})
"""Errors of the machine, not of the code, when they name a file: shown as one line."""


def naming(err: OSError, path: object) -> OSError:
    """``err`` with ``path`` as its file name when it names none (a ``write`` on a full disk or past
    a file-size limit raises ``[Errno 28]`` or ``[Errno 27]`` without one), so that the user's line
    says which file."""
    if err.filename is not None or err.errno is None:
        return err
    return OSError(err.errno, err.strerror, str(path))


def _lines(err: BaseException) -> list[str]:
    return [line.strip() for line in str(err).strip().splitlines() if line.strip()]


def _hydra_line(err: BaseException) -> str | None:
    """One line for Hydra's own errors (found by class, so this module needs no Hydra import)."""
    names = {cls.__name__ for cls in type(err).__mro__}
    if "OverrideParseException" in names:
        override = getattr(err, "override", None) or (_lines(err) or [""])[0]
        return (f"cannot parse the override {override!r}; quote its value for Hydra, e.g. "
                f"\"key='my value'\" (see README, 'Paths with spaces')")
    if "MissingConfigException" in names:  # unknown config-group option: keep the options
        lines = _lines(err)
        if "Config search path:" in lines:
            lines = lines[:lines.index("Config search path:")]
        options = [line for line in lines[1:] if not line.startswith("Available options")]
        return lines[0] + (f"; available: {', '.join(options)}" if options else "")
    if "ConfigCompositionException" in names:  # an unknown key, an ambiguous sweep value...
        lines = _lines(err)
        cause = err.__cause__
        if isinstance(cause, OmegaConfBaseException):
            lines.append(_lines(cause)[0] if _lines(cause) else "")
        return " ".join(line for line in lines if line and not line.startswith(("full_key", "object_type")))
    return None


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
        if type(current).__name__ == "MisconfigurationException":  # Lightning: a setting it cannot honour
            return "trainer: " + (_lines(current) or ["misconfigured"])[0]
        if isinstance(current, OSError) and current.filename and current.errno in ENVIRONMENT_ERRNOS:
            return f"{current.filename}: {current.strerror}"
        hydra = _hydra_line(current)
        if hydra is not None:
            return hydra
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
