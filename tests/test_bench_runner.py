import time

import pytest

from fastresnet.bench import Samples, measure_interleaved


def test_every_round_runs_every_candidate_once_in_varying_order():
    calls = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    samples = measure_interleaved(candidates, rounds=20, warmup=1)
    assert calls[:4] == ["a", "b", "c", "d"]  # warmup
    rounds = [tuple(calls[i : i + 4]) for i in range(4, len(calls), 4)]
    assert all(sorted(r) == ["a", "b", "c", "d"] for r in rounds)
    # No fixed neighbour: every candidate follows more than one other candidate.
    successors = {name: {r[r.index(name) - 1] for r in rounds if r.index(name) > 0} for name in "abcd"}
    assert all(len(s) > 1 for s in successors.values())
    assert all(len(s.seconds) == 20 for s in samples.values())


def test_slower_candidate_has_the_larger_median():
    samples = measure_interleaved({"fast": lambda: None, "slow": lambda: time.sleep(0.002)}, rounds=5, warmup=0)
    assert samples["slow"].p50 > samples["fast"].p50 + 0.001


def test_quantiles():
    s = Samples((5.0, 1.0, 3.0, 2.0, 4.0))
    assert (s.p20, s.p50, s.p80) == (1.8, 3.0, 4.2)


def test_bad_rounds():
    with pytest.raises(ValueError, match="rounds >= 1"):
        measure_interleaved({"a": lambda: None}, rounds=0)


def test_each_call_waits_untimed_for_the_previous_candidates_threads_to_settle():
    start = time.perf_counter()
    samples = measure_interleaved({"a": lambda: None, "b": lambda: None}, rounds=3, warmup=0, settle=0.05)
    assert time.perf_counter() - start >= 6 * 0.05  # a wait before each of the 6 calls
    assert all(max(s.seconds) < 0.05 for s in samples.values())  # and none of it timed
    with pytest.raises(ValueError, match="settle >= 0"):
        measure_interleaved({"a": lambda: None}, settle=-1)
