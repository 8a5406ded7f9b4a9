"""The records of fixed runs (tests/attacks/golden.py) are those pinned in golden_records.json:
every column of every record, trajectories included. A change that alters any record fails here; a
change meant to alter records re-pins them (``python -m tests.attacks.golden > ...``) in a commit
that says why. The first pins held across the reorganisation of the attack core into composable
parts; the second came with clean mode's earned verdicts, logit losses and per-replica random
starts (paper-mode runs kept every value, bar the per-loss random targets equal to a ground truth,
now skipped, and the float64 normalisation constants of these float64 victims). The third came with
whole verdicts: APGD's momentum memory copied (it was a view the engine overwrote) and its checkpoint
rules and tracked losses those of the authors' code, the two-sided targeted score, the floor on the
losses whose gradient could vanish, the real pipeline through the loaders' own resize on an 8-bit file
within the budget, transfer verdicts on the chosen image, and the worst-case columns (paper-mode runs
kept every value but the real pipeline's)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from . import golden

PINNED: dict[str, list[dict]] = json.loads(golden.GOLDEN_FILE.read_text())


@pytest.fixture(scope="module")
def engine_runs() -> dict:
    with golden.one_thread():
        return golden.engine_runs()


def same(got: Any, want: Any) -> bool:
    """Equal, floats to 1e-9 relative (float64 runs; only summation order may differ across machines)."""
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want))
    return type(got) is type(want) and got == want


def assert_records(got: list[dict], want: list[dict]) -> None:
    """Every column equal; a column the pinned engine record did not carry (it held optional keys
    only when set) must be ``None``."""
    assert len(got) == len(want)
    for index, (record, pinned) in enumerate(zip(got, want)):
        assert set(pinned) <= set(record), f"record {index}: columns {set(pinned) - set(record)} are missing"
        diff = {key: (record[key], pinned.get(key)) for key in record if not same(record[key], pinned.get(key))}
        assert not diff, f"record {index} ({pinned['image_id']}, {pinned['target']}, {pinned['loss']}): {diff}"


def test_every_run_is_pinned() -> None:
    assert set(PINNED) == set(golden.engine_run_names()) | set(golden.MODULE_RUNS)


@pytest.mark.parametrize("name", golden.engine_run_names())
def test_engine_records_are_the_pinned_ones(engine_runs: dict, name: str) -> None:
    with golden.one_thread():
        assert_records(golden.as_json(engine_runs[name]()), PINNED[name])


@pytest.mark.parametrize("name", sorted(golden.MODULE_RUNS))
def test_attack_module_records_are_the_pinned_ones(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    data = tmp_path_factory.getbasetemp() / "golden_data"
    with golden.one_thread():
        records = golden.module_records(golden.MODULE_RUNS[name], data, tmp_path_factory.mktemp(name))
    assert_records(golden.as_json(records), PINNED[name])
