"""StrategyGroup refuses intents carrying a tag prefix only amcp itself writes."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from amcp.domain.data import BarBatch
from amcp.domain.enums import OrderSide
from amcp.domain.identifiers import StrategyId
from amcp.domain.messages import OrderIntent
from amcp.engine.components import StrategyGroup
from amcp.errors import DomainError


class _Tagging:
    """A stand-in strategy that emits one intent with the given tag."""

    id = StrategyId("tagger")

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def on_bars(self, batch: BarBatch) -> list[OrderIntent]:
        return [OrderIntent(strategy_id=self.id, symbol="AAPL", side=OrderSide.BUY, quantity=Decimal(1), tag=self.tag)]


def _group(tag: str) -> StrategyGroup:
    group = StrategyGroup([], ("AAPL",))
    group.strategies = [_Tagging(tag)]
    return group


def _batch() -> BarBatch:
    p = np.array([100.0])
    return BarBatch(1, ("AAPL",), p, p, p, p, np.array([1e6]))


@pytest.mark.parametrize("tag", ["algo:twap:p-1", "leg-of:o-7"])
def test_a_reserved_tag_from_a_strategy_is_refused_with_the_reason(tag: str) -> None:
    with pytest.raises(DomainError, match=f"tagger.*{tag}.*reserved"):
        _group(tag).on_bars(_batch())


def test_an_ordinary_tag_passes() -> None:
    [intent] = _group("breakout").on_bars(_batch())
    assert intent.tag == "breakout"
