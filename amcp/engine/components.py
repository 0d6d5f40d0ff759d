"""The cycle's components that wrap one or more core classes behind batched methods.

Each public method here is one hop of the cycle: in the trading plane each is one actor call,
so each takes and returns everything that hop needs for a whole cycle.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping, Sequence

from amcp.config import AccountConfig, SizingConfig, StrategyConfig
from amcp.domain.data import BarBatch
from amcp.domain.identifiers import RESERVED_TAG_PREFIXES
from amcp.domain.messages import Intent, OrderFilled, SubmitOrder
from amcp.errors import DomainError
from amcp.portfolio.ledger import Portfolio
from amcp.portfolio.sizing import Sizer
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.strategies.registry import build_strategies


class StrategyGroup:
    """Several strategies run together (one Ray actor of the strategy pool holds one group)."""

    def __init__(self, configs: Sequence[StrategyConfig], symbols: tuple[str, ...]) -> None:
        self.strategies = build_strategies(list(configs), symbols)

    def on_bars(self, batch: BarBatch) -> list[Intent]:
        """The intents of every strategy for ``batch``.

        Raises:
            DomainError: if a strategy tags an intent with a prefix only amcp writes (an
                execution algorithm's children and broker-created legs are told apart by them).
        """
        intents: list[Intent] = []
        for strategy in self.strategies:
            for intent in strategy.on_bars(batch):
                if intent.tag.startswith(RESERVED_TAG_PREFIXES):
                    raise DomainError(
                        f"strategy {strategy.id} emitted an intent for {intent.symbol} tagged {intent.tag!r}: "
                        f"tags starting with {' or '.join(map(repr, RESERVED_TAG_PREFIXES))} are reserved"
                    )
                intents.append(intent)
        return intents

    def on_fills(self, fills: Sequence[OrderFilled]) -> None:
        for strategy in self.strategies:
            strategy.on_fills(fills)

    def state(self) -> dict[str, Any]:
        return {str(s.id): s.state() for s in self.strategies}

    def load_state(self, state: Mapping[str, Any]) -> None:
        for strategy in self.strategies:
            strategy.load_state(state[str(strategy.id)])


class PortfolioService:
    """The ledger plus sizing: marks, applies fills, and turns intents into orders."""

    def __init__(
        self, account: AccountConfig, sizing: SizingConfig, capital_fractions: Mapping[str, float]
    ) -> None:
        self.portfolio = Portfolio(account)
        self.sizer = Sizer(sizing, dict(capital_fractions))

    def begin_cycle(
        self, batch: BarBatch, fills: Sequence[OrderFilled], new_session: bool
    ) -> tuple[PortfolioSnapshot, list[float]]:
        """Start a session if one began, apply the fills, mark to the batch's closes.

        Start-of-day equity is taken before the session's fills and marks, i.e. at the previous
        session's close. Returns the snapshot and the realised P&L of each fill that closed
        (part of) a position, for the hit rate.
        """
        if new_session:
            self.portfolio.start_session(batch.ts_ns)
        closed: list[float] = []
        for fill in fills:
            before = self.portfolio.realized_pnl
            self.portfolio.apply_fill(fill)
            after = self.portfolio.realized_pnl
            if after != before:
                closed.append(float(after - before))
        self.portfolio.mark_batch(batch)
        return self.portfolio.snapshot(batch.ts_ns), closed

    def size(
        self, intents: Sequence[Intent], snapshot: PortfolioSnapshot, pending: Mapping[tuple[str, str], Decimal], ts_ns: int
    ) -> list[SubmitOrder]:
        return self.sizer.size(intents, snapshot, pending, ts_ns)

    def snapshot(self, ts_ns: int) -> PortfolioSnapshot:
        return self.portfolio.snapshot(ts_ns)
