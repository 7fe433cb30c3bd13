"""The overhead governor's plan: how a budget is shared among probed functions (pure logic)."""

from __future__ import annotations

import pytest
from peeka_agent import governor
from peeka_agent.governor import (
    DUTY_MIN,
    MAX_SLOWER,
    START_CAP,
    Demand,
    Setting,
    Valve,
    describe,
    plan,
    slower,
)

pytestmark = pytest.mark.parallel

MS = 1e6  # ns


def cost(d: Demand, s: Setting) -> float:
    """What a function costs per second under a setting, as the governor models it."""
    return s.duty * d.rate * (d.base_ns + (d.sample_ns / s.every if d.exports else 0.0))


def test_everything_fits_nothing_changes() -> None:
    demands = [Demand("a", 100, 1000, 20_000, True), Demand("b", 10, 1000, 20_000, True)]
    assert plan(demands, 50 * MS) == {"a": Setting(1, 1.0), "b": Setting(1, 1.0)}


def test_a_hot_function_is_sampled_and_a_cold_one_beside_it_keeps_every_call() -> None:
    hot = Demand("hot", 200_000, 300, 20_000, True)  # unsampled calls cost 60 ms/s, sampled ones 4 s/s
    cold = Demand("cold", 50, 1000, 30_000, True)
    settings = plan([hot, cold], 50 * MS)
    assert settings["cold"] == Setting(1, 1.0)
    assert settings["hot"].every > 1
    assert cost(hot, settings["hot"]) + cost(cold, settings["cold"]) <= 50 * MS * 1.01


def test_when_even_unsampled_calls_cost_too_much_the_probe_is_on_part_of_the_time() -> None:
    leaf = Demand("leaf", 1_000_000, 1000, 20_000, True)  # 1 s/s unsampled: far over any budget
    settings = plan([leaf], 40 * MS)
    assert settings["leaf"].duty < 0.05 and settings["leaf"].every >= 1
    assert cost(leaf, settings["leaf"]) <= 40 * MS * 1.01
    # a probe another client also listens to cannot be switched off: sampling only
    shared = plan([leaf._replace(pausable=False)], 40 * MS)["leaf"]
    assert shared.duty == 1.0 and shared.every > 1


def test_monitor_only_functions_are_duty_cycled_when_their_counting_costs_too_much() -> None:
    counted = Demand("m", 1_000_000, 300, 0, True, exports=False)
    setting = plan([counted], 30 * MS)["m"]
    assert setting.every == 1 and setting.duty <= 0.1 + 1e-9


def test_a_cap_per_entry_and_a_floor_for_the_duty() -> None:
    capped = Demand("c", 10_000, 100, 1000, True, max_per_second=100)
    assert plan([capped], 1e12)["c"].every == 100
    starving = plan([Demand("s", 1e7, 1000, 1000, True)], 1.0)["s"]
    assert starving.duty == DUTY_MIN  # still on now and then, so its rate stays known


def test_keep_share_protects_cold_functions_whatever_the_rest_costs() -> None:
    hot = Demand("hot", 1_000_000, 1000, 20_000, True)
    cold = Demand("cold", 100, 1000, 40_000, True)  # 4.1 ms/s
    assert plan([hot, cold], 1 * MS)["cold"].ratio < 1  # a budget of 1 ms/s cannot hold it...
    assert plan([hot, cold], 1 * MS, keep_ns_per_s=5 * MS)["cold"] == Setting(1, 1.0)  # ...unless kept


def test_what_the_cli_says() -> None:
    assert describe(Setting(40, 1.0), "myapp.utils.f", 0.05) == "sampling 1/40 calls of myapp.utils.f to stay under 5%"
    assert describe(Setting(1, 0.25), "f", 0.05) == "f probed 25.0% of the time to stay under 5%"
    assert describe(Setting(1, 1.0), "f", 0.05) is None


def test_the_agents_periodic_work_slows_down_while_it_is_over_its_share_and_back_when_well_under() -> None:
    factor = 1.0
    for _ in range(5):  # 3% of the process's CPU for the agent's own wakeups, budget 5%: over a quarter
        factor = slower(factor, 0.03, 0.05)
    assert factor == MAX_SLOWER
    assert slower(factor, 0.01, 0.05) == factor  # between the marks: kept (no flapping)
    assert slower(factor, 0.002, 0.05) == MAX_SLOWER / 2
    assert slower(1.0, 0.0, 0.05) == 1.0


class _Stream:
    """What a Valve reads of the stream behind it, and what it passes on."""

    needs_args = needs_frame = wants_enter = wants_suspend = False
    gate = None
    errors = 0

    def __init__(self) -> None:
        self.passed: list[object] = []

    def on_exit(self, call: object) -> None:
        self.passed.append(call)

    def tree_size(self, call: object) -> int:
        return 0


def test_a_valve_passes_one_call_in_every_and_counts_every_call_it_kept_away() -> None:
    stream = _Stream()
    valve = Valve(stream)
    valve.cap = None  # after the first plan
    valve.every = valve.countdown = 4
    passed = [valve.gate.test(i, i + 1, None, None) for i in range(1000)]  # type: ignore[union-attr]
    assert sum(passed) == 250 and passed[3] and not passed[0]
    assert (valve.seen, valve.taken, valve.skipped, valve.calls, valve.sampled) == (1000, 250, 750, 1000, 250)


def test_a_valve_caps_calls_until_the_first_plan() -> None:
    valve = Valve(_Stream())
    start = 10**12
    # 1000 calls in 0.1 s under the start cap: a full bucket (START_CAP) at most, plus what refills in 0.1 s.
    passed = sum(valve.gate.test(start, start + i * 100_000, None, None) for i in range(1000))  # type: ignore[union-attr]
    assert passed <= START_CAP * 0.1 + START_CAP and valve.skipped == 1000 - passed


def test_streams_of_one_group_share_its_budget() -> None:
    """``governor.Shared``: a stream plans with what the others' estimates leave, never less than an
    even split; one that leaves gives its share back, and the last one takes the group away."""
    group = governor.shared("g", 0.05)
    assert governor.shared("g", 0.08) is group and group.total == 0.05  # the smallest budget asked
    a = governor.Governor(None, 0.05, [], group)  # type: ignore[arg-type]
    assert a.budget == 0.05  # alone: all of it
    b = governor.Governor(None, 0.05, [], group)  # type: ignore[arg-type]
    a.ratio, b.ratio = 0.005, 0.04  # a cold stream beside a hot one
    assert abs(group.share(b) - 0.045) < 1e-12 and group.share(a) == 0.025  # the hot gets what a leaves; a its half
    a.ratio = b.ratio = 0.04
    assert group.share(a) == group.share(b) == 0.025
    a.leave()
    assert group.share(b) == 0.05 and group.members == [b]
    b.leave()
    assert "g" not in governor._GROUPS  # gone with its last stream: a new one starts afresh
