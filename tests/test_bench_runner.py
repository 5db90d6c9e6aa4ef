import time

import pytest

from fastresnet.bench import Samples, measure_interleaved


def test_interleaved_rounds_rotate_and_time_every_candidate():
    calls = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    samples = measure_interleaved(candidates, rounds=3, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warmup
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(s.seconds) == 3 for s in samples.values())


def test_slower_candidate_has_the_larger_median():
    samples = measure_interleaved({"fast": lambda: None, "slow": lambda: time.sleep(0.002)}, rounds=5, warmup=0)
    assert samples["slow"].p50 > samples["fast"].p50 + 0.001


def test_quantiles():
    s = Samples((5.0, 1.0, 3.0, 2.0, 4.0))
    assert (s.p20, s.p50, s.p80) == (1.8, 3.0, 4.2)


def test_bad_rounds():
    with pytest.raises(ValueError, match="rounds >= 1"):
        measure_interleaved({"a": lambda: None}, rounds=0)
