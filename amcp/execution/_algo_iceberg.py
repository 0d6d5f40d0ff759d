"""The iceberg algorithm: a large limit order shown one small child at a time."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar, cast

import numpy as np
from pydantic import Field, model_validator

from amcp.domain.enums import OrderType
from amcp.domain.instruments import instrument_for as default_instrument_for
from amcp.domain.messages import SubmitOrder
from amcp.domain.objects import to_decimal
from amcp.errors import ExecutionError
from amcp.execution._algo_single import SingleParentAlgorithm
from amcp.execution._algo_types import AlgorithmParams, ChildOrder, InstrumentLookup, MarketView, ParentOrder


class IcebergParams(AlgorithmParams):
    """Iceberg parameters.

    Attributes:
        display_quantity: the most any child shows, shares (contracts) on the lot.
        display_variance: randomise each child's size to ``display × (1 − variance × u)``,
            ``u ~ U[0, 1)`` drawn from ``(seed, child index)``, rounded down to the lot and at
            least one lot: smaller, never larger, than ``display_quantity``. 0: always the full
            display.
        seed: seed of the display randomisation (deterministic per child index, so a restored
            algorithm draws the same sizes).
    """

    display_quantity: Decimal = Field(..., gt=0)
    display_variance: float = Field(0.0, ge=0, lt=1)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _limit_children_only(self) -> IcebergParams:
        if self.order_type == "market" or self.limit_offset_bps is not None:
            raise ValueError(
                f"an iceberg's children are limit orders at the parent's limit: order_type "
                f"{self.order_type!r} and limit_offset_bps {self.limit_offset_bps!r} do not apply"
            )
        return self


class IcebergAlgorithm(SingleParentAlgorithm):
    """Work a limit order by showing at most ``display_quantity`` at a time.

    One limit child at the parent's limit price is working at any moment. When it fills
    completely the next one is sent at once (with the fill's timestamp); when it ends otherwise
    (canceled, expired, rejected, denied) the next one is sent at the next timer tick inside
    the window. The parent must have a limit price.
    """

    algo_name: ClassVar[str] = "iceberg"
    params_model: ClassVar[type[AlgorithmParams]] = IcebergParams

    def __init__(
        self, parent: ParentOrder, instrument_for: InstrumentLookup = default_instrument_for
    ) -> None:
        super().__init__(parent, instrument_for)
        if parent.limit_price is None:
            raise ExecutionError(f"parent {parent.parent_id}: an iceberg needs a limit_price, got None")
        display = self.iceberg_params.display_quantity
        if not self._instrument.is_valid_quantity(display):
            raise ExecutionError(
                f"parent {parent.parent_id}: display_quantity {display} is not a positive multiple of the "
                f"{parent.symbol} lot {self._lot}"
            )

    @property
    def iceberg_params(self) -> IcebergParams:
        return cast(IcebergParams, self._params)  # params_model validated it

    def display_size(self, index: int) -> Decimal:
        """The size child ``index`` shows (before capping by the quantity left)."""
        params = self.iceberg_params
        display = params.display_quantity
        if params.display_variance == 0:
            return display
        draw = float(np.random.default_rng([params.seed, index]).random())
        scaled = self._round_lot(display * to_decimal(1.0 - params.display_variance * draw))
        return max(scaled, self._lot)

    def _due(self, ts_ns: int, market: MarketView | None) -> Sequence[SubmitOrder]:
        return self._show(ts_ns)

    def _after_fill(self, child: ChildOrder, ts_ns: int) -> Sequence[SubmitOrder]:
        return self._show(ts_ns)

    def _show(self, ts_ns: int) -> Sequence[SubmitOrder]:
        if any(child.is_working for child in self._children.values()):
            return ()
        size = self.display_size(self._next_index)
        child = self._new_child(ts_ns, size, OrderType.LIMIT, self._parent.limit_price)
        return () if child is None else (child,)
