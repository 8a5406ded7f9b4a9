"""How ``train.py`` and ``attack.py`` start: command-line values Hydra cannot parse get quoted, and
every user error is one line.

Hydra's override grammar takes ``key=value`` with a plain value made of ASCII letters, digits,
spaces and a few signs; a data root such as ``/data/my data/dérmato`` (typed with the usual shell
quotes, so the program sees ``data.root=/data/my data/dérmato``) stops its lexer. Hydra accepts the
same value quoted (``data.root='/data/my data/dérmato'``). :func:`quote_overrides` does that for
every argument Hydra cannot parse as it is, when the quoted form parses to exactly the value typed;
commas keep Hydra's meaning, a sweep (``-m data.root=/a é,/b é`` is quoted item by item). Arguments
Hydra parses are left alone.

:func:`run_hydra_main` then runs the ``@hydra.main`` function with Hydra's errors raised rather
than printed (``HYDRA_FULL_ERROR=1``), so that an unknown key, an unknown option or an override that
cannot be parsed is, like every :class:`~medis.errors.MedisError`, ``error: <one line>`` and exit
status 2 (:func:`medis.errors.user_error_line`); any other exception keeps its traceback.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable

from medis.errors import exit_on_user_error

__all__ = ["hydra_quoted", "quote_overrides", "run_hydra_main"]

_VALUE_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c", "--package",
                "-p", "--info", "-i", "--experimental-rerun"}
"""Hydra flags followed by a value of their own (not an override)."""


def hydra_quoted(value: str) -> str:
    """``value`` as a single-quoted Hydra string: quotes escaped, and the backslashes before a quote
    or the end doubled (Hydra's rule for quoted values)."""
    doubled = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    return "'" + doubled.replace("'", "\\'") + "'"


_UNPARSABLE = object()


def _parses(parser: Any, override: str) -> Any:
    """Hydra's parsed value of ``override``, or :data:`_UNPARSABLE`."""
    try:
        return parser.parse_override(override).value()
    except Exception:  # noqa: BLE001 - Hydra's parse errors have several types
        return _UNPARSABLE


def _quoted_override(parser: Any, arg: str) -> str:
    """``arg`` with its value quoted when that makes an unparsable override parse to the typed value."""
    if _parses(parser, arg) is not _UNPARSABLE:
        return arg
    key, _, value = arg.partition("=")
    if not key or value[:1] in ("'", '"'):
        return arg
    if "," in value:  # Hydra reads unquoted commas as a sweep: quote each item
        items = value.split(",")
        swept = f"{key}=" + ",".join(hydra_quoted(item) for item in items)
        parsed = getattr(_parses(parser, swept), "list", None) or []
        if [getattr(item, "text", item) for item in parsed] == items:  # Hydra keeps QuotedString items
            return swept
    whole = f"{key}={hydra_quoted(value)}"
    if _parses(parser, whole) == value:
        return whole
    return arg


def quote_overrides(args: list[str]) -> list[str]:
    """The command-line arguments with every unparsable ``key=value`` quoted (see the module docstring)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    quoted, after_flag = [], False
    for arg in args:
        is_override = "=" in arg and not arg.startswith("-") and not after_flag
        quoted.append(_quoted_override(parser, arg) if is_override else arg)
        after_flag = arg in _VALUE_FLAGS
    return quoted


def run_hydra_main(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function from the command line (see the module docstring)."""
    sys.argv[1:] = quote_overrides(sys.argv[1:])
    os.environ["HYDRA_FULL_ERROR"] = "1"  # raise Hydra's errors to us instead of printing them
    exit_on_user_error(main)()
