"""benchmarks.harness.time_interleaved: per-call medians from interleaved rounds, the order
alternated round by round (a fake clock gives each candidate a known cost)."""

from __future__ import annotations

from benchmarks.harness import time_interleaved


def test_rounds_alternate_the_order_and_medians_are_per_call():
    now = [0.0]
    calls: list[str] = []
    cost = {"a": 0.010, "b": 0.020, "c": 0.040}  # seconds per call

    def candidate(name):
        def fn():
            calls.append(name)
            now[0] += cost[name]

        return fn

    timings = time_interleaved(
        {name: candidate(name) for name in cost},
        rounds=4,
        warmup=1,
        min_round_s=0.05,
        clock=lambda: now[0],
    )
    for name, seconds in cost.items():
        assert abs(timings[name].median - seconds) < 1e-12
    timed = calls[2 * len(cost) :]  # after each candidate's warm-up call and its sizing call
    orders = []
    i = 0
    for _ in range(4):
        round_names = []
        while len(round_names) < 3:
            name = timed[i]
            n = max(1, int(0.05 / cost[name]))
            assert timed[i : i + n] == [name] * n
            round_names.append(name)
            i += n
        orders.append(round_names)
    assert orders == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"], ["c", "b", "a"]]
