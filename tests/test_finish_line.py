"""The ranks of a multi-process attack meet at its end through marks in the run folder
(src/medis/runtime/finish_line.py): a late rank that keeps stepping is waited for however long it
takes; a silent one is reported in one line once the timeout has passed. The timeout is the DDP
strategy's, set in conf/trainer/ddp.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import medis.config.resolvers  # noqa: F401  (registers the resolvers and the target options)
from medis.runtime.finish_line import BEAT_EVERY_S, POLL_S, FinishLine, RankLost, strategy_timeout_s

from .conftest import CONF_DIR


class FakeTime:
    """A clock that moves only when a rank sleeps; ``during_sleep`` runs at every pause (the other ranks)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.during_sleep = lambda now: None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.during_sleep(self.now)


def line(folder: Path, rank: int, time: FakeTime, timeout_s: float = 60.0) -> FinishLine:
    return FinishLine(folder, rank, 2, timeout_s, clock=time.clock, sleep=time.sleep)


def test_a_late_rank_that_keeps_stepping_is_waited_for_beyond_the_timeout(tmp_path: Path) -> None:
    time = FakeTime()
    early, late = line(tmp_path, 0, time), line(tmp_path, 1, time)
    early.start(), late.start()
    early.cross()

    def other_rank(now: float) -> None:  # steps every pause, done after ten timeouts
        late.beat()
        if now - start >= 600.0:
            late.cross()

    start, time.during_sleep = time.now, other_rank
    early.wait()
    assert time.now - start >= 600.0  # waited ten times the timeout, and no error
    late.wait()  # both done: returns at once
    early.clear()
    assert not list(tmp_path.glob(".rank*"))


def test_a_silent_rank_is_reported_once_the_timeout_has_passed(tmp_path: Path) -> None:
    time = FakeTime()
    early, silent = line(tmp_path, 0, time), line(tmp_path, 1, time)
    early.start(), silent.start()
    early.cross()
    start = time.now
    with pytest.raises(RankLost, match=r"rank 1 of 2 has made no attack step for 1\.\d min \(more than the timeout "
                                       r"of 1\.0 min, trainer\.strategy\.timeout\).*resume=true"):
        early.wait()
    assert 60.0 < time.now - start <= 60.0 + POLL_S


def test_beats_are_spaced_and_a_new_start_forgets_an_old_run(tmp_path: Path) -> None:
    time = FakeTime()
    rank = line(tmp_path, 1, time)
    (tmp_path / ".rank1.done").touch()  # an interrupted run's mark
    rank.start()
    assert not (tmp_path / ".rank1.done").exists()
    beat = tmp_path / ".rank1.beat"
    first = beat.stat().st_mtime
    time.now += BEAT_EVERY_S / 2
    rank.beat()
    assert beat.stat().st_mtime == first  # too soon: no write
    time.now += BEAT_EVERY_S
    rank.beat()
    assert beat.stat().st_mtime == pytest.approx(time.now)


def test_the_timeout_is_the_ddp_strategy_s_and_can_be_set() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        default = compose(config_name="attack", overrides=["trainer=ddp"])
        longer = compose(config_name="attack", overrides=["trainer=ddp", "trainer.strategy.timeout.minutes=240"])
    assert strategy_timeout_s(instantiate(default.trainer.strategy)) == 1800.0
    strategy = instantiate(longer.trainer.strategy)
    assert type(strategy).__name__ == "DDPStrategy" and strategy_timeout_s(strategy) == 4 * 3600.0
    assert strategy_timeout_s(object()) == 1800.0  # a strategy without a process group: the default


def test_the_engine_s_progress_callback_beats_too(tmp_path: Path) -> None:
    time = FakeTime()
    rank = line(tmp_path, 0, time)
    heard: list[int] = []
    report = rank.beating(heard.append)
    report(7)
    assert heard == [7] and (tmp_path / ".rank0.beat").stat().st_mtime == pytest.approx(time.now)


def test_a_rank_that_stops_ends_the_wait_at_once_and_is_never_taken_for_done(tmp_path: Path) -> None:
    """A rank stopped by a signal or an error (also while it waited, after saying it was done) leaves a
    stop mark: the waiting ranks stop at once, not after the timeout; a new start forgets the mark."""
    time = FakeTime()
    early, stopping = line(tmp_path, 0, time), line(tmp_path, 1, time)
    early.start(), stopping.start()
    early.cross()
    stopping.cross()
    stopping.leave()  # e.g. SIGTERM while it waited for the others
    assert not (tmp_path / ".rank1.done").exists()
    start = time.now
    with pytest.raises(RankLost, match=r"rank 1 of 2 stopped before the end \(see its log\).*resume=true"):
        early.wait()
    assert time.now == start  # no waiting
    stopping.start()  # a resumed run
    assert not (tmp_path / ".rank1.stopped").exists()
