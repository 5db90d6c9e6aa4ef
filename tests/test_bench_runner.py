import time

import pytest

from fastresnet.bench import Samples, measure_interleaved


def test_every_round_runs_every_candidate_once_in_varying_order():
    calls = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    samples = measure_interleaved(candidates, rounds=20, warmup=1, lead_in=0)
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


def test_each_timed_call_follows_an_untimed_call_of_the_same_candidate():
    calls = []

    def candidate(name):
        calls.append(name)
        if len(calls) % 2 == 1:  # the lead-in of each pair: slow, and not timed
            time.sleep(0.03)

    samples = measure_interleaved({n: (lambda n=n: candidate(n)) for n in "ab"}, rounds=4, warmup=0)
    assert all(calls[i] == calls[i + 1] for i in range(0, len(calls), 2)) and len(calls) == 16
    assert all(max(s.seconds) < 0.03 for s in samples.values())
    with pytest.raises(ValueError, match="lead_in >= 0"):
        measure_interleaved({"a": lambda: None}, lead_in=-1)
