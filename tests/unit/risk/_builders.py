"""Hand-written builders for the risk engine tests: the smallest objects a check needs."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from itertools import count
from typing import Any

from amcp.config import RiskConfig
from amcp.domain import ClientOrderId, OrderSide, OrderType, StrategyId, SubmitOrder
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import RiskContext, RiskEngine

NOW_NS = 1_700_000_000 * 1_000_000_000
SECOND_NS = 1_000_000_000
STRATEGY = StrategyId("momentum-1")

_ids = count()


def order(
    symbol: str = "AAPL",
    side: OrderSide = OrderSide.BUY,
    quantity: Decimal | int | str = 10,
    *,
    client_order_id: str | None = None,
    order_type: OrderType = OrderType.MARKET,
    limit_price: Decimal | str | None = None,
    stop_price: Decimal | str | None = None,
    **extra: Any,
) -> SubmitOrder:
    """A SubmitOrder with a fresh client order id unless one is given."""
    return SubmitOrder(
        client_order_id=ClientOrderId(client_order_id or f"o-{next(_ids)}"),
        strategy_id=extra.pop("strategy_id", STRATEGY),
        symbol=symbol,
        side=side,
        quantity=Decimal(quantity) if not isinstance(quantity, Decimal) else quantity,
        order_type=order_type,
        limit_price=Decimal(limit_price) if limit_price is not None else None,
        stop_price=Decimal(stop_price) if stop_price is not None else None,
        ts_ns=extra.pop("ts_ns", NOW_NS),
        **extra,
    )


def snapshot(
    *,
    prices: dict[str, Decimal | str | int] | None = None,
    price_ts_ns: dict[str, int] | None = None,
    positions: dict[str, Decimal | str | int] | None = None,
    gross_exposure: Decimal | int = 0,
    buying_power: Decimal | int = 1_000_000,
    equity: Decimal | int = 1_000_000,
    start_of_day_equity: Decimal | int = 1_000_000,
) -> PortfolioSnapshot:
    """A snapshot with AAPL marked at 100 now, unless told otherwise."""
    marks = {"AAPL": Decimal(100)} if prices is None else {k: Decimal(v) for k, v in prices.items()}
    return PortfolioSnapshot(
        ts_ns=NOW_NS,
        cash=Decimal(equity),
        equity=Decimal(equity),
        market_value=Decimal(0),
        gross_exposure=Decimal(gross_exposure),
        buying_power=Decimal(buying_power),
        start_of_day_equity=Decimal(start_of_day_equity),
        positions={k: Decimal(v) for k, v in (positions or {}).items()},
        prices=marks,
        price_ts_ns=price_ts_ns if price_ts_ns is not None else {symbol: NOW_NS for symbol in marks},
    )


def context(
    portfolio: PortfolioSnapshot | None = None,
    *,
    ts_ns: int = NOW_NS,
    open_orders: tuple[SubmitOrder, ...] = (),
    session_date: date | None = None,
) -> RiskContext:
    return RiskContext(
        ts_ns=ts_ns,
        portfolio=portfolio if portfolio is not None else snapshot(),
        open_orders=open_orders,
        session_date=session_date,
    )


def engine(**limits: Any) -> RiskEngine:
    """A RiskEngine on the default RiskConfig with ``limits`` overridden."""
    return RiskEngine(RiskConfig(**limits))
