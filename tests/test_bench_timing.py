"""The benchmark suite's timing helpers: warm-up calls and paired (alternating) timing."""

from __future__ import annotations

import time

import pytest

from benchmarks.peers import _result
from benchmarks.run import _paired_runs


def test_warm_up_calls_before_several_timed_ones_and_none_before_one() -> None:
    calls: list[int] = []
    assert _result.warm_up(lambda: calls.append(1), repeats=1) == []
    assert calls == []
    assert len(_result.warm_up(lambda: calls.append(1), repeats=3)) == _result.WARM_CALLS
    assert len(calls) == _result.WARM_CALLS


def test_warm_up_stops_after_a_long_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_result, "WARM_MAX_CALL_S", 0.01)
    times = _result.warm_up(lambda: time.sleep(0.02), repeats=3)
    assert len(times) == 1 and times[0] >= 0.02


def test_median_time_warms_up_then_times_repeats() -> None:
    calls: list[int] = []
    _, times, out = _result.median_time(lambda: calls.append(1) or len(calls), repeats=4)
    assert len(times) == 4
    assert len(calls) == _result.WARM_CALLS + 4
    assert out == len(calls)


def test_paired_runs_alternate_the_functions_round_by_round() -> None:
    order: list[str] = []
    times = _paired_runs([lambda: order.append("f"), lambda: order.append("g")], repeats=3,
                         min_total_s=0.0)
    assert [len(t) for t in times] == [3, 3]
    assert order == ["f", "g"] * 3
