"""A condition's gate (tested before any Call exists) decides exactly as the condition over the Call.

The gate is compiled from the condition's own checked tree, with comparisons of ``cost`` against a
number done on integer nanoseconds (observe._CostInNanoseconds); these tests compare the two on
costs around each bound, and on conditions the folding must leave alone.
"""

from __future__ import annotations

import pytest
from peeka_agent import observe
from peeka_agent.probes import Call

pytestmark = pytest.mark.parallel


class _Probe:
    def __init__(self) -> None:
        self.code = (lambda a: a).__code__
        self.name = "f"


CONDITIONS = [
    "cost > 100", "cost >= 0.5", "cost < 0.25", "cost <= 1", "cost == 2", "cost != 2", "3 < cost",
    "0.000001 < cost", "cost > 0.3", "cost > 1e-7", "cost > 123456789", "cost > -1",
    "cost > 1 and result == 4", "cost * 2 > 3", "not cost > 2", "cost > 1 > 0",
    "any(cost > 1 for cost in [0, 3])", "[cost > 1.5 for x in [1]][0]",
    "exception is None and cost > 0.001",
]
COSTS_NS = [0, 1, 999, 1000, 1001, 250_000, 299_999, 300_000, 300_001, 500_000, 999_999, 1_000_000, 1_000_001,
            1_500_000, 2_000_000, 2_000_001, 3_000_000, 100_000_000, 100_000_001, 123_456_789_000_000,
            123_456_789_000_001]


@pytest.mark.parametrize("source", CONDITIONS)
def test_gate_agrees_with_the_condition(source: str) -> None:
    condition = observe.CallExpression(source, "condition")
    gate = condition.gate()
    assert gate is not None and gate.source
    probe = _Probe()
    for cost in COSTS_NS:
        start = 10**12
        call = Call(probe, start, start + cost, None, 4, None)  # type: ignore[arg-type]
        assert bool(gate.test(start, start + cost, 4, None)) == bool(condition.evaluate(call)), (source, cost)


def _inline(source: str) -> str:
    return observe.CallExpression(source, "c").gate().source.replace("(", "").replace(")", "")


def test_cost_bounds_become_integer_nanoseconds() -> None:
    assert "_e - _s > 100000000" in _inline("cost > 100")
    assert "250000 < _e - _s" in _inline("0.25 < cost")
    # left alone: a bound that is no whole number of ns, and a comprehension's own ``cost``
    assert "/ 1e6" in _inline("cost > 1e-7")
    assert "/ 1e6" not in _inline("any(cost > 1 for cost in [3])")


def test_a_plain_condition_is_native_python() -> None:
    """The false-condition hot path: no guard, no budget, for comparisons with constants."""
    assert "_pk" not in _inline("cost > 100")
    assert "_pk" not in _inline("exception is None and cost > 0.5 and result == 4")
