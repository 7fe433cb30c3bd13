"""The overhead governor's plan: how a budget is shared among probed functions (pure logic)."""

from __future__ import annotations

from peeka_agent.governor import DUTY_MIN, Demand, Setting, describe, plan

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
