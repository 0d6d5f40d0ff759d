"""Replay of a bar panel as a market-data feed (what the MarketData actor serves in paper mode)."""

from __future__ import annotations

from amcp.data.bars import BarPanel
from amcp.domain.data import BarBatch


class ReplayFeed:
    """Serves a panel's bar batches by cycle index, in chunks (one actor hop per chunk)."""

    def __init__(self, panel: BarPanel) -> None:
        self.panel = panel

    def length(self) -> int:
        return len(self.panel)

    def symbols(self) -> tuple[str, ...]:
        return self.panel.symbols

    def batches(self, start: int, stop: int) -> list[BarBatch]:
        stop = min(stop, len(self.panel))
        return [self.panel.batch(i) for i in range(max(start, 0), stop)]
