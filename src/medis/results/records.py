"""The record: one row per (image, target kind, loss) of an attack, and its one codec.

The engine emits :class:`Record` objects; fusion, the summaries, the attack comparison, the sweep
report, the plots and the W&B tables read them; :mod:`medis.reporting.record_file` writes and reads
them as the rows of ``records.csv`` through :func:`encode_row` / :func:`decode_row`. A record is
typed once, when it is made: :func:`as_record` turns any mapping (a dict of a test, a row of a
pandas frame with NumPy scalars and NaN) into a validated :class:`Record`, and every reader after
that trusts its fields.

A record is also a read-only mapping (``record["loss"]``, ``dict(record)``): its keys are the
columns of :data:`RECORD_COLUMNS`, then its ``tags`` (extra keys such as a sweep's ``job`` label,
which readers may group by and which are never written to ``records.csv``).

Pure Python: no torch, no NumPy, no Lightning/Hydra/W&B.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medis.results.values import is_missing

__all__ = ["LEGACY_COLUMNS", "RECORD_COLUMNS", "REQUIRED_KEYS", "Record", "as_record", "as_records", "csv_field",
           "decode_row", "encode_row", "record_key"]


@dataclass(frozen=True, slots=True)
class Record(Mapping):
    """One attack record (see the module docstring).

    Attributes:
        dataset, image_id, target, loss: identity; ``target`` is a target kind (``untargeted`` for
            an untargeted attack), ``loss`` the loss label (``<member>/<loss>`` in an ensemble).
        mode: ``clean`` or ``paper`` bookkeeping.
        eps: the budget of the update rule, ``None`` when unbounded.
        success: the success rule held at some record; ``steps``: distortion of the first success
            (``None`` when not successful); ``metric``: the score at the success, else the last one.
            These and every other unprefixed verdict describe ONE image, the *chosen* one: MedIS's
            first success, else the last admissible iterate.
        pruned: stopped by ``fusion_only`` before it could succeed.
        linf, l2, linf_255, l2_255, ssim, psnr: size of the chosen adversarial perturbation.
        trajectory: the recorded scores, in order.
        attack: the attack's name; ``forwards``, ``backwards``: passes spent on the replica (in
            clean mode the clean image's pass is counted on its first loss's record).
        transfer_metric, transfer_success: the chosen image judged on another model.
        set_aside: clean mode: the clean prediction already satisfied the success rule (a clean
            failure; a prediction already at its target), so the image was not attacked and does
            not count in the attack success rate.
        clean_metric: clean mode: the score of the clean image's prediction.
        real_metric, real_success: the chosen image judged through the real pipeline (its 8-bit file
            within the budget, the loaders' resize), as the model would see it; ``real_success`` is
            ``None`` where that pipeline already fails the clean image (set aside there).
        worst_metric: the worst case for the model, the *worst* image: the best admissible iterate's
            score (at full size); ``worst_steps`` the updates that led to it (from the clean image);
            ``worst_linf``, ``worst_l2``, ``worst_ssim``, ``worst_psnr`` its size; ``worst_real_*`` and
            ``worst_transfer_*`` its other verdicts (as above). The same image as the chosen one
            when MedIS's first success is also the best iterate.
        tags: extra keys (e.g. ``job``), readable like columns, never written to ``records.csv``.
    """

    dataset: str
    image_id: str
    target: str
    loss: str
    mode: str | None = None
    eps: float | None = None
    success: bool = False
    steps: int | None = None
    metric: float | None = None
    pruned: bool = False
    linf: float | None = None
    l2: float | None = None
    linf_255: float | None = None
    l2_255: float | None = None
    ssim: float | None = None
    psnr: float | None = None
    trajectory: tuple[float, ...] = ()
    attack: str | None = None
    forwards: int | None = None
    backwards: int | None = None
    transfer_metric: float | None = None
    transfer_success: bool | None = None
    set_aside: bool = False
    clean_metric: float | None = None
    real_metric: float | None = None
    real_success: bool | None = None
    worst_metric: float | None = None
    worst_steps: int | None = None
    worst_linf: float | None = None
    worst_l2: float | None = None
    worst_ssim: float | None = None
    worst_psnr: float | None = None
    worst_real_metric: float | None = None
    worst_real_success: bool | None = None
    worst_transfer_metric: float | None = None
    worst_transfer_success: bool | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ mapping view
    def __getitem__(self, key: str) -> Any:
        if key in _COLUMN_SET:
            return getattr(self, key)
        return self.tags[key]

    def __iter__(self) -> Iterator[str]:
        yield from RECORD_COLUMNS
        yield from self.tags

    def __len__(self) -> int:
        return len(RECORD_COLUMNS) + len(self.tags)

    @property
    def targeted(self) -> bool:
        """Whether the attack steered toward a target (any target kind but ``untargeted``)."""
        return self.target != UNTARGETED

    def tagged(self, **tags: Any) -> "Record":
        """A copy with ``tags`` added (e.g. ``job=<label>``)."""
        return dataclasses.replace(self, tags={**self.tags, **tags})


UNTARGETED = "untargeted"
RECORD_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Record) if f.name != "tags")
"""The columns of ``records.csv``, in order."""
_COLUMN_SET = frozenset(RECORD_COLUMNS)
LEGACY_COLUMNS: tuple[tuple[str, ...], ...] = (RECORD_COLUMNS[: RECORD_COLUMNS.index("trajectory") + 1],
                                               RECORD_COLUMNS[: RECORD_COLUMNS.index("transfer_success") + 1],
                                               RECORD_COLUMNS[: RECORD_COLUMNS.index("real_success") + 1])
"""Headers of records files written by earlier versions (read, the newer columns at their defaults)."""
REQUIRED_KEYS: tuple[str, ...] = ("dataset", "image_id", "target", "loss", "success", "steps", "metric")
"""Keys a mapping must have to become a record; the others default to ``None`` (or ``False``, ``()``)."""
_STR = ("dataset", "target", "loss")
_OPTIONAL_STR = ("mode", "attack")
_FLOAT = ("eps", "metric", "linf", "l2", "linf_255", "l2_255", "ssim", "psnr", "transfer_metric", "clean_metric",
          "real_metric", "worst_metric", "worst_linf", "worst_l2", "worst_ssim", "worst_psnr", "worst_real_metric",
          "worst_transfer_metric")
_INT = ("forwards", "backwards", "worst_steps")
_BOOL = ("pruned", "set_aside", "transfer_success", "real_success", "worst_real_success", "worst_transfer_success")
_OPTIONAL_BOOL = ("transfer_success", "real_success", "worst_real_success", "worst_transfer_success")


def record_key(record: Mapping) -> tuple[str, str, str, str]:
    """A record's identity within a run: ``(dataset, image_id, target, loss)``, all as ``str``."""
    return str(record["dataset"]), str(record["image_id"]), str(record["target"]), str(record["loss"])


# --------------------------------------------------------------------------------------------
# From any mapping
# --------------------------------------------------------------------------------------------


def _where(record: Mapping, index: int) -> str:
    parts = ", ".join(f"{key}={record.get(key, '?')!r}" for key in ("dataset", "image_id", "loss"))
    return f"record #{index} ({parts})"


def _bool(value: Any, key: str, where: str) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
    elif not is_missing(value):
        try:
            if value in (0, 1):  # bool, int, numpy.bool_, 0.0 / 1.0
                return bool(value)
        except (TypeError, ValueError):
            pass
    raise ValueError(f"{where}: {key!r} must be a bool, got {value!r}")


def _float(value: Any, key: str, where: str) -> float | None:
    if is_missing(value):
        return None
    if isinstance(value, (bool, str)):
        raise ValueError(f"{where}: {key!r} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {key!r} must be a number, got {value!r}") from None


def _count(value: Any, key: str, where: str) -> int | None:
    """A non-negative integral value (``3``, ``3.0``, a NumPy int) or ``None``."""
    if is_missing(value):
        return None
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where}: {key!r} must be an int, got {value!r}")
    as_float = float(value)
    if not as_float.is_integer() or as_float < 0:
        raise ValueError(f"{where}: {key!r} must be a non-negative int, got {value!r}")
    return int(as_float)


def _trajectory(value: Any, where: str) -> tuple[float, ...]:
    if is_missing(value):
        return ()
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'trajectory' must be a list of numbers, got {value!r}") from None


def as_record(value: Record | Mapping, index: int = 0) -> Record:
    """``value`` as a validated :class:`Record` (a record itself is returned as it is).

    Accepts what pandas and CSV readers give: NumPy scalars, NaN for a missing value, an integral
    float for ``steps``, ``"True"``/``"False"`` strings for booleans. Keys outside
    :data:`RECORD_COLUMNS` become ``tags``.

    Args:
        value: a :class:`Record` or a mapping with at least :data:`REQUIRED_KEYS`.
        index: the record's position, named in error messages.

    Raises:
        TypeError: ``value`` is not a mapping.
        ValueError: a required key is missing, or a value has the wrong kind (one line naming the
            record and the key).
    """
    if isinstance(value, Record):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"record #{index} is a {type(value).__name__}, not a mapping")
    where = _where(value, index)
    for key in REQUIRED_KEYS:
        if key not in value:
            raise ValueError(f"{where} is missing required key {key!r}")
    for key in ("dataset", "image_id", "target", "loss"):
        if is_missing(value[key]):
            raise ValueError(f"{where}: {key!r} is {value[key]!r}")
    for key in _STR:
        if not isinstance(value[key], str):
            raise ValueError(f"{where}: {key!r} must be a str, got {value[key]!r}")
    success = _bool(value["success"], "success", where)
    steps = None
    if success:
        if is_missing(value["steps"]) or isinstance(value["steps"], (bool, str)):
            raise ValueError(f"{where}: successful but 'steps' is {value['steps']!r}, not a step index")
        steps = _count(value["steps"], "steps", where)
    values: dict[str, Any] = {key: _float(value.get(key), key, where) for key in _FLOAT}
    if success and values["metric"] is None:
        raise ValueError(f"{where}: successful but 'metric' is {value['metric']!r}")
    values.update({key: _count(value.get(key), key, where) for key in _INT})
    values.update({key: None if is_missing(value.get(key)) else _bool(value[key], key, where) for key in _BOOL})
    for key in set(_BOOL) - set(_OPTIONAL_BOOL):
        values[key] = bool(values[key])
    for key in _OPTIONAL_STR:
        text = value.get(key)
        values[key] = None if is_missing(text) or (isinstance(text, str) and not text.strip()) else str(text)
    tags = {key: item for key, item in value.items() if key not in _COLUMN_SET}
    return Record(dataset=value["dataset"], image_id=value["image_id"], target=value["target"], loss=value["loss"],
                  success=success, steps=steps, trajectory=_trajectory(value.get("trajectory"), where),
                  **values, tags=tags)


def as_records(records: Iterable[Record | Mapping]) -> list[Record]:
    """Every item as a :class:`Record` (:func:`as_record`); a single mapping is refused."""
    if isinstance(records, Mapping):
        raise TypeError("records must be an iterable of mappings, not a single mapping")
    return [as_record(record, index) for index, record in enumerate(records)]


# --------------------------------------------------------------------------------------------
# CSV row codec
# --------------------------------------------------------------------------------------------


def csv_field(value: Any) -> str:
    """One CSV field: ``""`` for None, ``repr`` for floats (exact round trip), ``str`` otherwise."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def encode_row(record: Record) -> list[str]:
    """The CSV fields of a record, in :data:`RECORD_COLUMNS` order (tags are not written)."""
    return [json.dumps(list(record.trajectory)) if key == "trajectory" else csv_field(getattr(record, key))
            for key in RECORD_COLUMNS]


class RowError(ValueError):
    """A CSV field that cannot be decoded; ``str()`` names the column, the value and what was expected."""


def _decoded(key: str, text: str) -> Any:
    if key in ("dataset", "image_id", "target", "loss"):
        return text
    if key in _OPTIONAL_STR:
        return text or None
    if key in ("success",) + _BOOL:
        if text == "" and key in _OPTIONAL_BOOL:
            return None
        if text not in ("True", "False"):
            raise RowError(f"column {key!r} is {text!r}, not True or False")
        return text == "True"
    if text == "":
        return () if key == "trajectory" else None
    if key in ("steps",) + _INT:
        try:
            return int(text)
        except ValueError:
            raise RowError(f"column {key!r} is {text!r}, not an int or empty") from None
    if key == "trajectory":
        try:
            parsed = json.loads(text)
            if not isinstance(parsed, list):
                raise ValueError
            return tuple(float(v) for v in parsed)
        except (ValueError, TypeError):
            raise RowError(f"column {key!r} is {text!r}, not a JSON list of numbers") from None
    try:
        return float(text)
    except ValueError:
        raise RowError(f"column {key!r} is {text!r}, not a number or empty") from None


def decode_row(fields: Sequence[str], header: Sequence[str] = RECORD_COLUMNS) -> Record:
    """A record from the CSV ``fields`` of a row under ``header`` (:data:`RECORD_COLUMNS` or one of
    :data:`LEGACY_COLUMNS`); columns missing from the header take their defaults.

    Raises:
        RowError: a field does not parse (the message names the column and the value).
    """
    return Record(**{key: _decoded(key, text) for key, text in zip(header, fields)})
