"""Baskets: several legs, each worked by its own single-symbol algorithm."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, Self

from amcp.domain.enums import OrderSide, OrderStatus
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.instruments import instrument_for as default_instrument_for
from amcp.domain.messages import CancelOrder, OrderDenied, OrderFilled
from amcp.errors import AmcpError, ExecutionError
from amcp.execution._algo_iceberg import IcebergAlgorithm
from amcp.execution._algo_schedule import TWAPAlgorithm, VWAPAlgorithm
from amcp.execution._algo_single import SingleParentAlgorithm
from amcp.execution._algo_types import (
    STATE_VERSION,
    AlgoCommand,
    AlgorithmStatus,
    ChildOrder,
    ExecutionAlgorithm,
    InstrumentLookup,
    MarketView,
    ParentOrder,
    check_state_header,
    parse_timestamp,
)

SINGLE_ALGORITHMS: Final[Mapping[str, type[SingleParentAlgorithm]]] = MappingProxyType(
    {"twap": TWAPAlgorithm, "vwap": VWAPAlgorithm, "iceberg": IcebergAlgorithm}
)
"""Single-symbol algorithms by the name a :class:`ParentOrder` gives in ``algo``."""

_ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class BasketLeg:
    """One instrument of a basket.

    Attributes:
        symbol: instrument symbol.
        side: buy or sell.
        quantity: shares (contracts) on the instrument's lot.
        limit_price: worst price (USD), or ``None``.
        params: parameters merged over the basket's (e.g. a per-symbol ``volume_curve``).
    """

    symbol: str
    side: OrderSide
    quantity: Decimal
    limit_price: Decimal | None = None
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_record(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "side": OrderSide(self.side).value,
            "quantity": str(self.quantity),
            "limit_price": None if self.limit_price is None else str(self.limit_price),
            "params": dict(self.params),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BasketOrder:
    """A set of legs worked together over one window, each by ``algo`` (TWAP by default).

    Leg ``i`` becomes the parent order ``<basket_id>-L<i>`` (see :meth:`leg_parents`), whose
    children carry ids derived from it.

    Raises:
        ExecutionError: if there is no leg, a symbol appears twice, or a leg is invalid.
    """

    basket_id: ClientOrderId
    strategy_id: StrategyId
    legs: tuple[BasketLeg, ...]
    start_ns: int
    end_ns: int
    algo: str = "twap"
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        try:
            basket_id = ClientOrderId(self.basket_id)
        except AmcpError as exc:
            raise ExecutionError(f"basket has an invalid id: {exc}") from exc
        legs = tuple(self.legs)
        if not legs or not all(isinstance(leg, BasketLeg) for leg in legs):
            raise ExecutionError(f"basket {basket_id} needs at least one BasketLeg, got {self.legs!r}")
        symbols = [leg.symbol for leg in legs]
        repeated = sorted({symbol for symbol in symbols if symbols.count(symbol) > 1})
        if repeated:
            raise ExecutionError(f"basket {basket_id} lists {repeated} more than once; one leg per symbol")
        if self.algo not in SINGLE_ALGORITHMS:
            raise ExecutionError(
                f"basket {basket_id}: algo {self.algo!r} is not one of {sorted(SINGLE_ALGORITHMS)}"
            )
        object.__setattr__(self, "basket_id", basket_id)
        object.__setattr__(self, "legs", legs)
        object.__setattr__(self, "params", dict(self.params))
        self.leg_parents()  # validates every leg now rather than when the basket starts

    def leg_parents(self) -> tuple[ParentOrder, ...]:
        """The parent order of each leg, in leg order."""
        return tuple(
            ParentOrder(
                parent_id=ClientOrderId(f"{self.basket_id}-L{i}"),
                strategy_id=self.strategy_id,
                symbol=leg.symbol,
                side=leg.side,
                quantity=leg.quantity,
                limit_price=leg.limit_price,
                start_ns=self.start_ns,
                end_ns=self.end_ns,
                algo=self.algo,
                params={**self.params, **leg.params},
            )
            for i, leg in enumerate(self.legs)
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "basket_id": str(self.basket_id),
            "strategy_id": str(self.strategy_id),
            "legs": [leg.to_record() for leg in self.legs],
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "algo": self.algo,
            "params": dict(self.params),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> BasketOrder:
        """Rebuild a basket from :meth:`to_record` output.

        Raises:
            ExecutionError: if a key is missing or a value is invalid.
        """
        try:
            legs = tuple(
                BasketLeg(
                    symbol=leg["symbol"],
                    side=OrderSide(leg["side"]),
                    quantity=Decimal(leg["quantity"]),
                    limit_price=None if leg["limit_price"] is None else Decimal(leg["limit_price"]),
                    params=leg.get("params", {}),
                )
                for leg in record["legs"]
            )
            return cls(
                basket_id=record["basket_id"],
                strategy_id=StrategyId(record["strategy_id"]),
                legs=legs,
                start_ns=record["start_ns"],
                end_ns=record["end_ns"],
                algo=record["algo"],
                params=record.get("params", {}),
            )
        except ExecutionError:
            raise
        except (KeyError, TypeError, ValueError, ArithmeticError, AmcpError) as exc:
            raise ExecutionError(f"basket record is malformed: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class LegProgress:
    """How far one leg has come: quantities in shares (contracts), ``average_price`` in USD."""

    symbol: str
    side: OrderSide
    quantity: Decimal
    filled_quantity: Decimal
    average_price: Decimal | None
    status: AlgorithmStatus


class BasketAlgorithm(ExecutionAlgorithm):
    """Work every leg of a basket with its own algorithm; cancel them together.

    Events are routed to the leg that owns the child. Legs run independently: one leg that
    stops (denied, window over) does not stop the others; :meth:`cancel` stops them all.
    ``filled_quantity`` and ``remaining_quantity`` add shares across legs; see
    :meth:`progress` and :attr:`filled_notional` for a per-leg and a dollar view.

    Args:
        basket: the basket order.
        instrument_for: maps each leg's symbol to its instrument.

    Raises:
        ExecutionError: if a leg's parent or params are invalid for the basket's algorithm.
    """

    algo_name: Final = "basket"

    def __init__(
        self, basket: BasketOrder, instrument_for: InstrumentLookup = default_instrument_for
    ) -> None:
        if not isinstance(basket, BasketOrder):
            raise ExecutionError(f"expected a BasketOrder, got {type(basket).__name__}")
        self._basket = basket
        algorithm = SINGLE_ALGORITHMS[basket.algo]
        self._legs: tuple[SingleParentAlgorithm, ...] = tuple(
            algorithm(parent, instrument_for) for parent in basket.leg_parents()
        )

    # ------------------------------------------------------------------ views
    @property
    def basket(self) -> BasketOrder:
        return self._basket

    @property
    def legs(self) -> tuple[SingleParentAlgorithm, ...]:
        """Each leg's algorithm, in leg order."""
        return self._legs

    @property
    def filled_quantity(self) -> Decimal:
        return sum((leg.filled_quantity for leg in self._legs), _ZERO)

    @property
    def remaining_quantity(self) -> Decimal:
        return sum((leg.remaining_quantity for leg in self._legs), _ZERO)

    @property
    def total_quantity(self) -> Decimal:
        """Sum of the legs' quantities (shares and contracts added as they are)."""
        return sum((leg.parent.quantity for leg in self._legs), _ZERO)

    @property
    def fraction_filled(self) -> float:
        """Filled shares over total shares, in [0, 1]."""
        return float(self.filled_quantity / self.total_quantity)

    @property
    def filled_notional(self) -> Decimal:
        """USD traded so far: Σ filled × average price × multiplier over the legs."""
        total = _ZERO
        for leg in self._legs:
            if leg.average_price is not None:
                total += leg.filled_quantity * leg.average_price * leg.instrument.multiplier
        return total

    def progress(self) -> tuple[LegProgress, ...]:
        """Per-leg progress, in leg order."""
        return tuple(
            LegProgress(
                symbol=leg.parent.symbol,
                side=leg.parent.side,
                quantity=leg.parent.quantity,
                filled_quantity=leg.filled_quantity,
                average_price=leg.average_price,
                status=leg.status,
            )
            for leg in self._legs
        )

    @property
    def working_children(self) -> tuple[ChildOrder, ...]:
        return tuple(child for leg in self._legs for child in leg.working_children)

    @property
    def status(self) -> AlgorithmStatus:
        """COMPLETED when every leg completed; STOPPED when all ended, not all completed;
        RUNNING while any leg runs; PENDING before the start; FINISHING otherwise."""
        statuses = [leg.status for leg in self._legs]
        if all(status.is_done for status in statuses):
            if all(status is AlgorithmStatus.COMPLETED for status in statuses):
                return AlgorithmStatus.COMPLETED
            return AlgorithmStatus.STOPPED
        if AlgorithmStatus.RUNNING in statuses:
            return AlgorithmStatus.RUNNING
        if all(status is AlgorithmStatus.PENDING for status in statuses):
            return AlgorithmStatus.PENDING
        return AlgorithmStatus.FINISHING

    def owns(self, client_order_id: str) -> bool:
        return any(leg.owns(client_order_id) for leg in self._legs)

    # ------------------------------------------------------------------ commands and events
    def on_start(self, ts_ns: int, market: Mapping[str, MarketView] | None = None) -> list[AlgoCommand]:
        """Start every leg (see :meth:`SingleParentAlgorithm.on_start`)."""
        ts_ns = parse_timestamp(ts_ns)
        if self.status is not AlgorithmStatus.PENDING:
            raise ExecutionError(f"basket {self._basket.basket_id} was already started")
        return [command for leg in self._legs for command in leg.on_start(ts_ns, market)]

    def on_timer(self, ts_ns: int, market: Mapping[str, MarketView] | None = None) -> list[AlgoCommand]:
        """Advance every leg to ``ts_ns``; ``market`` is keyed by symbol."""
        return [command for leg in self._legs for command in leg.on_timer(ts_ns, market)]

    def on_fill(self, event: OrderFilled) -> list[AlgoCommand]:
        return self._leg(event.client_order_id).on_fill(event)

    def on_child_done(self, client_order_id: str, status: OrderStatus | str, ts_ns: int) -> list[AlgoCommand]:
        return self._leg(client_order_id).on_child_done(client_order_id, status, ts_ns)

    def on_denied(self, denied: OrderDenied) -> list[AlgoCommand]:
        return self._leg(denied.client_order_id).on_denied(denied)

    def cancel(self, ts_ns: int, reason: str = "basket canceled") -> list[CancelOrder]:
        """Stop every leg and cancel all their working children."""
        return [command for leg in self._legs for command in leg.cancel(ts_ns, reason)]

    def _leg(self, client_order_id: str) -> SingleParentAlgorithm:
        for leg in self._legs:
            if leg.owns(client_order_id):
                return leg
        raise ExecutionError(
            f"{str(client_order_id)!r} is not a child of any leg of basket {self._basket.basket_id}"
        )

    # ------------------------------------------------------------------ checkpoint
    @property
    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "algo": self.algo_name,
            "basket": self._basket.to_record(),
            "legs": [leg.state for leg in self._legs],
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], instrument_for: InstrumentLookup = default_instrument_for
    ) -> Self:
        """Rebuild a basket and every leg from :attr:`state`.

        Raises:
            ExecutionError: if the state is malformed, or its legs do not match its basket.
        """
        check_state_header(state, cls.algo_name)
        try:
            basket = BasketOrder.from_record(state["basket"])
            leg_states = list(state["legs"])
        except (KeyError, TypeError) as exc:
            raise ExecutionError(
                f"basket checkpoint state is malformed: {type(exc).__name__}: {exc}"
            ) from exc
        parents = basket.leg_parents()
        if len(leg_states) != len(parents):
            raise ExecutionError(
                f"basket {basket.basket_id} checkpoint has {len(leg_states)} leg states "
                f"for {len(parents)} legs"
            )
        algorithm = SINGLE_ALGORITHMS[basket.algo]
        legs = []
        for parent, leg_state in zip(parents, leg_states, strict=True):
            leg = algorithm.from_state(leg_state, instrument_for)
            if leg.parent.to_record(params={}) != parent.to_record(params={}):
                raise ExecutionError(
                    f"basket {basket.basket_id} checkpoint: leg state is for parent {leg.parent.parent_id} "
                    f"({leg.parent.symbol}), the basket derives {parent.parent_id} ({parent.symbol})"
                )
            legs.append(leg)
        basket_algorithm = cls(basket, instrument_for)
        basket_algorithm._legs = tuple(legs)
        return basket_algorithm
