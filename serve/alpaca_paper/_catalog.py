"""The read side of the paper broker: its shared state and every answer that changes nothing.

:class:`PaperCatalog` holds the state the layers of :class:`~serve.alpaca_paper._book.PaperBroker`
share (simulated time, universe, ledger, orders, option quotes and the option contract list,
last closes, FILL activities) and answers from it: ``GET /v2/orders`` and one order, the
account, positions, assets, ``/v2/clock``, ``/v2/calendar``, option contracts and account
activities. It also prices what an order would cost: instrument look-ups, reference prices,
option net prices, the buying power open orders reserve and the 403 checks against it. Nothing
here sends, fills or ends an order: that is :class:`~serve.alpaca_paper._groups.OrderGroups`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np
import pandas as pd

from amcp.config import AccountConfig
from amcp.data.calendar import EXCHANGE_TIMEZONE, TradingCalendar
from amcp.domain.enums import OrderSide, OrderStatus, OrderType
from amcp.domain.instruments import Instrument, OptionContract
from amcp.engine.clock import new_york_date
from amcp.errors import AmcpError, ExecutionError
from amcp.portfolio.ledger import Portfolio
from serve.alpaca_paper._orders import (
    CODE_FORBIDDEN,
    CODE_INVALID,
    CODE_NOT_FOUND,
    NAMESPACE,
    ZERO,
    FillActivity,
    ListedOption,
    PaperApiError,
    PaperOrder,
    activity_types,
    asset_id,
    average,
    day,
    eastern,
    instant,
    invalid,
    listed_option,
    rfc3339,
    select_activities,
    select_contracts,
    text,
)

_DEFAULT_ORDER_LIMIT = 50
_MAX_ORDER_LIMIT = 500
_EXCHANGE = "NASDAQ"
"""The ``exchange`` every asset and position reports (the server has no listing data)."""
_TRUE, _FALSE = ("true", "1"), ("false", "0", "")


class PaperCatalog:
    """The paper broker's shared state and its read-only answers (module doc).

    Not built alone: :class:`~serve.alpaca_paper._book.PaperBroker` is the class to construct,
    and it checks these arguments.

    Args:
        start_ts_ns: the simulated clock's start, UTC nanoseconds.
        portfolio: the ledger (cash, positions, buying power) fills are booked into.
        account_config: account type (margin or cash) and margin multiplier.
        instrument_for: maps a symbol to its instrument (tick and lot sizes).
        symbols: the tradable universe; ``None`` accepts every symbol ``instrument_for`` does.
        calendar: the exchange calendar; ``None``: the default one, built when first needed.
    """

    def __init__(
        self,
        *,
        start_ts_ns: int,
        portfolio: Portfolio,
        account_config: AccountConfig,
        instrument_for: Callable[[str], Instrument],
        symbols: Collection[str] | None,
        calendar: TradingCalendar | None,
    ) -> None:
        self._now_ns = start_ts_ns
        self._instrument_for = instrument_for
        self._universe = None if symbols is None else frozenset(symbols)
        self._portfolio = portfolio
        self._account = account_config
        self._calendar = calendar
        self._orders: dict[str, PaperOrder] = {}
        self._by_client_id: dict[str, PaperOrder] = {}
        self._activities: list[FillActivity] = []
        self._option_quotes: dict[str, tuple[Decimal, Decimal]] = {}  # OCC symbol: (bid, ask) USD
        self._listings: list[ListedOption] | None = None  # None: no list given, any OCC symbol trades
        self._listing_by_key: dict[str, ListedOption] = {}  # by symbol and by id
        # symbol: (New York day of its last close, that close, the previous day's close)
        self._closes: dict[str, tuple[date, float, float | None]] = {}
        self._account_id = str(uuid.uuid5(NAMESPACE, "account"))

    # ------------------------------------------------------------------ options

    def set_option_contracts(self, contracts: Iterable[str | OptionContract | ListedOption]) -> None:
        """Replace the list ``/v2/options/contracts`` serves; mleg legs must then be listed and active.

        Args:
            contracts: OCC symbols, :class:`OptionContract` instruments or :class:`ListedOption`
                records (status, style, underlying, close price).

        Raises:
            ExecutionError: for an item that is none of those, or a symbol listed twice.
        """
        listings = sorted((listed_option(item) for item in contracts), key=lambda listing: listing.symbol)
        by_key: dict[str, ListedOption] = {}
        for listing in listings:
            if listing.symbol in by_key:
                raise ExecutionError(f"option contract {listing.symbol} is listed twice")
            by_key[listing.symbol] = by_key[listing.id] = listing
        self._listings, self._listing_by_key = listings, by_key

    def option_contracts(self, query: Mapping[str, str]) -> dict[str, Any]:
        """Answer ``GET /v2/options/contracts`` (see :func:`~serve.alpaca_paper._orders.select_contracts`)."""
        return select_contracts(self._listings or [], query)

    def option_contract(self, symbol_or_id: str) -> dict[str, Any]:
        """Answer ``GET /v2/options/contracts/{symbol_or_id}``.

        Raises:
            PaperApiError: 404 if no listed contract has this symbol or id.
        """
        listing = self._listing_by_key.get(symbol_or_id.strip().upper()) or self._listing_by_key.get(
            symbol_or_id.strip().lower()
        )
        if listing is None:
            raise PaperApiError(404, f"option contract not found: {symbol_or_id!r}", CODE_NOT_FOUND)
        return listing.to_json()

    # ------------------------------------------------------------------ activities

    def activities(self, query: Mapping[str, str], activity_type: str | None = None) -> list[dict[str, Any]]:
        """Answer ``GET /v2/account/activities[/{activity_type}]`` (FILL activities only exist).

        Raises:
            PaperApiError: 422 for an unknown type or an invalid parameter.
        """
        types = activity_types(query, None if activity_type is None else activity_type.strip().upper())
        return select_activities(self._activities, query, types)

    # ------------------------------------------------------------------ orders

    def order(self, order_id: str) -> PaperOrder:
        """Return the order with this Alpaca id.

        Raises:
            PaperApiError: 404 if there is none.
        """
        order = self._orders.get(order_id.lower())
        if order is None:
            raise PaperApiError(404, f"order not found: {order_id!r}", CODE_NOT_FOUND)
        return order

    def order_json(self, order: PaperOrder, nested: bool = True) -> dict[str, Any]:
        """Return an order's Alpaca JSON, its legs nested unless ``nested`` is False."""
        if not nested or not order.leg_ids:
            return order.to_json()
        return order.to_json([self._orders[leg_id].to_json() for leg_id in order.leg_ids])

    def order_by_client_id(self, client_order_id: str | None) -> PaperOrder:
        """Return the order with this ``client_order_id``.

        Raises:
            PaperApiError: 422 if the parameter is missing, 404 if no order has it.
        """
        if not client_order_id:
            raise invalid("missing required parameter 'client_order_id'")
        order = self._by_client_id.get(client_order_id)
        if order is None:
            message = f"order not found for client_order_id {client_order_id!r}"
            raise PaperApiError(404, message, CODE_NOT_FOUND)
        return order

    def list_orders(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        """Handle ``GET /v2/orders`` (``status``, ``limit``, ``after``, ``until``, ``direction``,
        ``side``, ``symbols``, ``nested``; ``after`` and ``until`` are exclusive bounds on
        ``submitted_at``).

        Without ``nested`` every order, legs included, is an item of its own with ``legs``
        null. With ``nested=true`` legs appear only inside their parent, and a parent and its
        legs count as one item: open if any of them is, matching ``side`` or ``symbols`` if
        any of them does.

        Raises:
            PaperApiError: 422 for an invalid parameter.
        """
        status = query.get("status") or "open"
        if status not in ("open", "closed", "all"):
            raise invalid(f"invalid status {status!r}; expected open, closed or all")
        direction = query.get("direction") or "desc"
        if direction not in ("asc", "desc"):
            raise invalid(f"invalid direction {direction!r}; expected asc or desc")
        limit_text = query.get("limit")
        try:
            limit = _DEFAULT_ORDER_LIMIT if not limit_text else int(limit_text)
        except ValueError:
            raise invalid(f"invalid limit {limit_text!r}; expected an integer") from None
        if not 1 <= limit <= _MAX_ORDER_LIMIT:
            raise invalid(f"invalid limit {limit}; expected 1 to {_MAX_ORDER_LIMIT}")
        after, until = instant(query, "after"), instant(query, "until")
        side = query.get("side")
        if side is not None and side not in ("buy", "sell"):
            raise invalid(f"invalid side {side!r}; expected buy or sell")
        nested_text = (query.get("nested") or "").lower()
        if nested_text not in _TRUE + _FALSE:
            raise invalid(f"invalid nested {query.get('nested')!r}; expected true or false")
        nested = nested_text in _TRUE
        symbols = {s.strip().upper() for s in query.get("symbols", "").split(",") if s.strip()}

        def member_matches(order: PaperOrder) -> bool:
            own_side = not (order.is_mleg and order.parent_id is None)  # an mleg strategy has none
            return (side is None or (own_side and order.side.value == side)) and (
                not symbols or order.symbol in symbols
            )

        chosen = []
        for order in self._orders.values():
            if nested and order.parent_id is not None:
                continue
            group = [order, *(self._orders[i] for i in order.leg_ids)] if nested else [order]
            is_open = any(member.is_open for member in group)
            if (
                (status == "all" or is_open == (status == "open"))
                and (after is None or order.created_ns > after)
                and (until is None or order.created_ns < until)
                and any(member_matches(member) for member in group)
            ):
                chosen.append(order)
        chosen.sort(key=lambda order: order.sequence, reverse=direction == "desc")
        return [self.order_json(order, nested) for order in chosen[:limit]]

    # ------------------------------------------------------------------ account

    def account(self) -> dict[str, Any]:
        """Return ``GET /v2/account``: the ledger's cash, equity and buying power (open buy orders
        reserved), long and short market values and margin."""
        p = self._portfolio
        long_value = short_value = ZERO
        for position in p.positions().values():
            if position.quantity > 0:
                long_value += position.market_value
            else:
                short_value += position.market_value
        buying_power = max(ZERO, p.buying_power - self._reserved())
        margin = self._account.account_type == "margin"
        initial = p.initial_margin_requirement
        return {
            "id": self._account_id,
            "account_number": "PA" + self._account_id.replace("-", "")[:10].upper(),
            "status": "ACTIVE",
            "crypto_status": "INACTIVE",
            "currency": "USD",
            "buying_power": text(buying_power),
            "regt_buying_power": text(buying_power),
            "daytrading_buying_power": "0",
            "non_marginable_buying_power": text(max(ZERO, p.cash)),
            "options_buying_power": text(max(ZERO, p.cash)),
            "cash": text(p.cash),
            "accrued_fees": "0",
            "pending_transfer_out": None,
            "pending_transfer_in": "0",
            "portfolio_value": text(p.equity),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": rfc3339(0),
            "trade_suspended_by_user": False,
            "multiplier": text(self._account.margin_multiplier) if margin else "1",
            "shorting_enabled": margin,
            "equity": text(p.equity),
            "last_equity": text(p.start_of_day_equity),
            "long_market_value": text(long_value),
            "short_market_value": text(short_value),
            "initial_margin": text(initial),
            "maintenance_margin": text(initial),
            "last_maintenance_margin": "0",
            "sma": "0",
            "daytrade_count": 0,
            "options_approved_level": 2,
            "options_trading_level": 2,
        }

    def positions(self) -> list[dict[str, Any]]:
        """Return ``GET /v2/positions``: open positions, by symbol."""
        return [self._position_json(symbol) for symbol in sorted(self._portfolio.positions())]

    def position(self, symbol: str) -> dict[str, Any]:
        """Return ``GET /v2/positions/{symbol}``.

        Raises:
            PaperApiError: 404 if no position is open in ``symbol``.
        """
        symbol = symbol.strip().upper()
        if symbol not in self._portfolio.positions():
            raise PaperApiError(404, f"position does not exist: {symbol!r}", CODE_NOT_FOUND)
        return self._position_json(symbol)

    def asset(self, symbol: str) -> dict[str, Any]:
        """Return ``GET /v2/assets/{symbol}``.

        Raises:
            PaperApiError: 404 for a symbol outside the universe.
        """
        symbol = symbol.strip().upper()
        instrument = self._instrument(symbol, 404)
        option = isinstance(instrument, OptionContract)
        return {
            "id": asset_id(symbol),
            "class": "us_option" if option else "us_equity",
            "exchange": _EXCHANGE,
            "symbol": symbol,
            "name": symbol,
            "status": "active",
            "tradable": True,
            "marginable": not option,
            "shortable": not option,
            "easy_to_borrow": not option,
            "fractionable": bool(instrument.lot_size < 1),
            "min_order_size": text(instrument.lot_size),
            "min_trade_increment": text(instrument.lot_size),
            "price_increment": "0.01",
            "maintenance_margin_requirement": 30,
            "attributes": [],
        }

    def clock(self) -> dict[str, Any]:
        """Return ``GET /v2/clock`` at the simulated time (New York offsets, as Alpaca)."""
        opens, closes = self._sessions_around(self._now_ns)
        now = self._now_ns
        is_open = bool(np.any((opens <= now) & (now < closes)))
        next_open = opens[opens > now]
        next_close = closes[closes > now]
        if next_open.size == 0 or next_close.size == 0:
            raise PaperApiError(500, f"the calendar has no session after {rfc3339(now)}")
        return {
            "timestamp": eastern(now),
            "is_open": is_open,
            "next_open": eastern(int(next_open[0])),
            "next_close": eastern(int(next_close[0])),
        }

    def calendar(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        """Return ``GET /v2/calendar?start=&end=`` (dates inclusive; the whole calendar by default).

        Raises:
            PaperApiError: 422 for a date that is not ``YYYY-MM-DD``.
        """
        start = day(query, "start") or date(1990, 1, 1)
        end = day(query, "end") or date(2100, 1, 1)
        opens, closes = self._trading_calendar().opens_closes_ns(start, end)
        if opens.size == 0:
            return []
        local_open = _new_york(opens)
        local_close = _new_york(closes)
        days = local_open.strftime("%Y-%m-%d")
        open_text, close_text = local_open.strftime("%H:%M"), local_close.strftime("%H:%M")
        return [
            {"date": d, "open": o, "close": c, "session_open": "0400", "session_close": "2000"}
            for d, o, c in zip(days, open_text, close_text, strict=True)
        ]

    # ------------------------------------------------------------------ internals

    def _instrument(self, symbol: str, status: int) -> Instrument:
        if self._universe is not None and symbol not in self._universe:
            raise PaperApiError(status, f"asset not found: {symbol!r} is not in the paper server's universe",
                                CODE_NOT_FOUND if status == 404 else CODE_INVALID)
        try:
            return self._instrument_for(symbol)
        except (AmcpError, LookupError, ValueError, TypeError) as exc:
            raise PaperApiError(status, f"asset not found: {symbol!r} ({exc})",
                                CODE_NOT_FOUND if status == 404 else CODE_INVALID) from None

    def _option_leg(self, symbol: str) -> OptionContract:
        """The contract an mleg leg names: an option in the universe and, if a list was given,
        listed and active."""
        instrument = self._instrument(symbol, 422)
        if not isinstance(instrument, OptionContract):
            raise invalid(f"mleg leg symbol {symbol!r} is not an option contract (an OCC symbol)")
        if self._listings is not None:
            listing = self._listing_by_key.get(instrument.occ_symbol)
            if listing is None:
                raise invalid(f"unknown option contract {symbol!r}: not among the {len(self._listings)} "
                               "contracts the paper server lists")
            if listing.status != "active":
                raise invalid(f"option contract {symbol!r} is {listing.status}, not tradable")
        return instrument

    def _mark(self, symbol: str) -> Decimal | None:
        last = self._closes.get(symbol)
        return None if last is None else Decimal(repr(last[1]))

    def _reference_price(
        self, symbol: str, order_type: OrderType, limit: Decimal | None, stop: Decimal | None
    ) -> Decimal | None:
        """The price buying power is checked at: limit, else stop, else the last close (or None)."""
        if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and limit is not None:
            return limit
        if order_type is OrderType.STOP and stop is not None:
            return stop
        return self._mark(symbol)

    def _net_price(self, legs: Iterable[tuple[OrderSide, Decimal, str]]) -> Decimal | None:
        """Net USD per share of one strategy unit at the option quotes (buy at the ask, sell at
        the bid; positive: a debit), None if a leg has no quote or no bid to sell into."""
        net = ZERO
        for side, ratio, symbol in legs:
            quote = self._option_quotes.get(symbol)
            price = None if quote is None else quote[1] if side is OrderSide.BUY else quote[0]
            if price is None or price <= 0:
                return None
            net += side.sign * ratio * price
        return net

    def _reserved(self) -> Decimal:
        """USD held for open orders that add exposure: leaves × reference price × multiplier.

        Exits (oco orders, bracket and oto legs) reserve nothing; an mleg order reserves its net
        debit (at its limit, else at the quotes) and its legs nothing.
        """
        total = ZERO
        for order in self._orders.values():
            if not order.is_open or order.order_class == "oco" or order.parent_id is not None:
                continue
            if order.is_mleg:
                net = order.limit_price
                if net is None:
                    legs = [self._orders[leg_id] for leg_id in order.leg_ids]
                    net = self._net_price((leg.side, leg.ratio_qty or ZERO, leg.symbol) for leg in legs)
                if net is not None and net > 0:
                    total += net * order.leaves * order.multiplier
            elif order.side is OrderSide.BUY:
                price = self._reference_price(
                    order.symbol, order.order_type, order.limit_price, order.stop_price
                )
                if price is not None:
                    total += order.leaves * price * order.multiplier
        return total

    def _check_buying_power(
        self, symbol: str, side: OrderSide, quantity: Decimal, price: Decimal | None, multiplier: Decimal
    ) -> None:
        """403 when the order needs more than the buying power left (or, in a cash account, shares
        it does not hold). A buy with no known price is not checked (see the doc of
        :mod:`serve.alpaca_paper.server`)."""
        held = self._portfolio.positions().get(symbol)
        held_quantity = held.quantity if held is not None else ZERO
        if side is OrderSide.SELL:
            available = max(ZERO, held_quantity - self._selling(symbol))
            opening = quantity - available  # the part that would open or add to a short
            if opening <= 0:
                return
            if self._account.account_type == "cash":
                raise PaperApiError(
                    403,
                    f"insufficient qty available for order (requested: {text(quantity)}, available: "
                    f"{text(available)}); a cash account cannot sell short",
                    CODE_FORBIDDEN,
                )
            quantity = opening
        if price is None:
            return
        self._require_buying_power(quantity * price * multiplier)

    def _selling(self, symbol: str) -> Decimal:
        """Quantity open sell orders of ``symbol`` may still sell: an exit pair counts once (only
        one of its exits can fill), held exits not at all (their position does not exist yet)."""
        total, counted = ZERO, set()
        for order in self._orders.values():
            if not order.is_open or order.status is OrderStatus.HELD or order.symbol != symbol:
                continue
            if order.side is not OrderSide.SELL or order.id in counted:
                continue
            other = self._other_exit(order)
            if other is not None and other.is_open:
                counted.add(other.id)
                total += max(order.leaves, other.leaves)
            else:
                total += order.leaves
        return total

    def _require_buying_power(self, cost: Decimal) -> None:
        """403 unless ``cost`` (USD) fits in the buying power left after open orders' reservations."""
        buying_power = max(ZERO, self._portfolio.buying_power - self._reserved())
        if cost > buying_power:
            raise PaperApiError(
                403,
                f"insufficient buying power: the order needs {text(cost)} USD, "
                f"{text(buying_power)} USD is available",
                CODE_FORBIDDEN,
                buying_power=text(buying_power) or "0",
                cost_basis=text(cost) or "0",
            )

    def _other_exit(self, order: PaperOrder) -> PaperOrder | None:
        """The other order of an exit pair (oco take-profit and stop-loss, bracket legs), if any."""
        if order.order_class == "oco":
            if order.parent_id is not None:
                return self._orders[order.parent_id]
            return self._orders[order.leg_ids[0]] if order.leg_ids else None
        if order.order_class == "bracket" and order.parent_id is not None:
            for leg_id in self._orders[order.parent_id].leg_ids:
                if leg_id != order.id:
                    return self._orders[leg_id]
        return None

    def _position_json(self, symbol: str) -> dict[str, Any]:
        position = self._portfolio.positions()[symbol]
        last = self._closes.get(symbol)
        current = position.last_price
        lastday = Decimal(repr(last[2])) if last is not None and last[2] is not None else current
        quantity = position.quantity
        cost = abs(position.cost_basis)
        market_value = position.market_value
        unrealized = position.unrealized_pnl
        intraday = (current - lastday) * quantity * position.multiplier
        lastday_value = abs(lastday * quantity * position.multiplier)
        instrument = self._instrument_for(symbol)
        return {
            "asset_id": asset_id(symbol),
            "symbol": symbol,
            "exchange": _EXCHANGE,
            "asset_class": "us_option" if isinstance(instrument, OptionContract) else "us_equity",
            "asset_marginable": not isinstance(instrument, OptionContract),
            "avg_entry_price": text(average(position.average_price)),
            "qty": text(quantity),
            "qty_available": text(quantity),
            "side": "long" if quantity > 0 else "short",
            "market_value": text(market_value),
            "cost_basis": text(position.cost_basis),
            "unrealized_pl": text(unrealized),
            "unrealized_plpc": text(_ratio(unrealized, cost)),
            "unrealized_intraday_pl": text(intraday),
            "unrealized_intraday_plpc": text(_ratio(intraday, lastday_value)),
            "current_price": text(current),
            "lastday_price": text(lastday),
            "change_today": text(_ratio(current - lastday, lastday)),
        }

    def _trading_calendar(self) -> TradingCalendar:
        if self._calendar is None:
            self._calendar = TradingCalendar()
        return self._calendar

    def _sessions_around(self, ts_ns: int) -> tuple[np.ndarray, np.ndarray]:
        session = new_york_date(ts_ns)
        calendar = self._trading_calendar()
        return calendar.opens_closes_ns(session - timedelta(days=7), session + timedelta(days=21))


def _new_york(ts_ns: np.ndarray) -> pd.DatetimeIndex:
    """UTC nanoseconds as New York local times."""
    return pd.DatetimeIndex(ts_ns.view("datetime64[ns]")).tz_localize("UTC").tz_convert(EXCHANGE_TIMEZONE)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    if not denominator:
        return ZERO
    return (numerator / denominator).quantize(Decimal("1E-10"), rounding=ROUND_DOWN).normalize()

