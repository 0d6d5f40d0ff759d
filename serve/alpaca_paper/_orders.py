"""Alpaca's order object and request parsing for the paper server: errors, numbers, JSON.

Pure helpers shared by :mod:`serve.alpaca_paper._book`: :class:`PaperApiError` (an error answer
with Alpaca's ``{"code", "message"}`` body), the parsers of request fields (422 on bad input,
naming the value), Alpaca's decimal-string and timestamp formats, :class:`PaperOrder`, the exit
terms of bracket, oco and oto orders (:func:`parse_exits`), the legs of multi-leg option orders
(:func:`parse_option_legs`), the option contract list (:class:`ListedOption`,
:func:`select_contracts`) and the account's FILL activities (:class:`FillActivity`,
:func:`select_activities`).
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd

from amcp.data.calendar import EXCHANGE_TIMEZONE
from amcp.domain.enums import OptionRight, OrderSide, OrderStatus, OrderType, TimeInForce
from amcp.domain.instruments import OptionContract
from amcp.engine.clock import new_york_date
from amcp.errors import AmcpError, ExecutionError
from amcp.portfolio.ledger import LEDGER_CONTEXT

NAMESPACE = uuid.UUID("0b7f3c52-9a8e-4d1b-8f6e-3c2a1d5e7f90")
ZERO = Decimal(0)
AVERAGE_QUANTUM = Decimal("1E-10")
"""Average prices (``filled_avg_price``, ``avg_entry_price``) are rounded half-even to this (USD)."""

OPEN_STATUSES = frozenset(
    {
        OrderStatus.NEW,
        OrderStatus.ACCEPTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_NEW,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.PENDING_REPLACE,
        OrderStatus.HELD,
    }
)
_ENUMS: dict[str, type[OrderSide] | type[OrderType] | type[TimeInForce]] = {
    "side": OrderSide,
    "type": OrderType,
    "time_in_force": TimeInForce,
}

# Alpaca's error codes: HTTP status × 100,000 (+ a detail digit for 422 validation errors).
CODE_INVALID = 40010001
CODE_UNAUTHORIZED = 40110000
CODE_FORBIDDEN = 40310000
CODE_NOT_FOUND = 40410000
CODE_UNPROCESSABLE = 42210000


class PaperApiError(ExecutionError):
    """A request the paper server answers with an Alpaca error body.

    Attributes:
        status: HTTP status (400, 401, 403, 404, 422, ...).
        code: Alpaca's numeric error code.
        message: the ``message`` of the body, naming the offending value.
        extra: further body fields (e.g. ``buying_power`` and ``cost_basis`` on a 403).
    """

    def __init__(self, status: int, message: str, code: int | None = None, **extra: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code if code is not None else status * 100_000
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """Return Alpaca's JSON error body ``{"code": ..., "message": ..., **extra}``."""
        return {"code": self.code, "message": self.message, **self.extra}


def invalid(message: str) -> PaperApiError:
    return PaperApiError(422, message, CODE_INVALID)


def rfc3339(ts_ns: int) -> str:
    """Format UTC nanoseconds as Alpaca does: ``2024-01-02T14:30:00.123456789Z``."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    whole = pd.Timestamp(seconds, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z"


def eastern(ts_ns: int) -> str:
    """Format UTC nanoseconds in New York time with its offset, as ``/v2/clock`` does."""
    return pd.Timestamp(ts_ns, unit="ns", tz="UTC").tz_convert(EXCHANGE_TIMEZONE).isoformat()


def text(value: Decimal | None) -> str | None:
    """Alpaca's decimal string: ``Decimal("1.50")`` -> ``"1.5"``, ``Decimal("1E+2")`` -> ``"100"``."""
    if value is None:
        return None
    rendered = f"{value.normalize(LEDGER_CONTEXT):f}"
    return "0" if rendered in ("-0", "0") else rendered


_MAX_DIGITS = 15
"""Numbers in a request must be below 10^15 in magnitude (and not below 10^-15)."""
_MIN_EXPONENT = -15


def number(body: Mapping[str, Any], name: str, label: str | None = None) -> Decimal | None:
    """Return body[name] as a finite Decimal, None if absent; 422 naming ``label`` (default
    ``name``) if it is not a number."""
    value = body.get(name)
    label = label or name
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise invalid(f"invalid {label} {value!r}; expected a number")
    try:
        result = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise invalid(f"invalid {label} {value!r}; expected a number") from None
    if not result.is_finite():
        raise invalid(f"invalid {label} {value!r}; expected a finite number")
    if result and not _MIN_EXPONENT <= result.adjusted() < _MAX_DIGITS:
        raise invalid(f"invalid {label} {value!r}; out of range")
    return result


def positive(body: Mapping[str, Any], name: str, label: str | None = None) -> Decimal | None:
    """Return body[name] as a Decimal > 0, None if absent; 422 naming ``label`` otherwise."""
    result = number(body, name, label)
    if result is not None and result <= 0:
        raise invalid(f"{label or name} must be > 0 (got {body.get(name)!r})")
    return result


def parse_enum(body: dict[str, Any], name: str, default: str | None = None) -> Any:
    kind = _ENUMS[name]
    value = body.get(name, default)
    try:
        return kind(value)
    except ValueError:
        allowed = [member.value for member in kind]
        raise invalid(f"invalid {name} {value!r}; expected one of {allowed}") from None


@dataclass(slots=True)
class PaperOrder:
    """Alpaca's view of one order (mutable; only the broker changes it).

    Quantities are shares or contracts, prices USD; ``*_ns`` are UTC nanoseconds.
    """

    id: str
    client_order_id: str
    sequence: int
    symbol: str
    asset_class: str
    side: OrderSide
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    notional: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    trail_price: Decimal | None
    trail_percent: Decimal | None
    extended_hours: bool
    created_ns: int
    multiplier: Decimal
    status: OrderStatus = OrderStatus.NEW
    updated_ns: int = 0
    filled_quantity: Decimal = ZERO
    filled_value: Decimal = ZERO  # Σ fill qty × price, USD per unit (no multiplier)
    filled_ns: int | None = None
    canceled_ns: int | None = None
    expired_ns: int | None = None
    failed_ns: int | None = None
    replaced_ns: int | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    reason: str = ""
    fills: list[tuple[int, Decimal, Decimal]] = field(default_factory=list)
    order_class: str = "simple"
    parent_id: str | None = None
    """The order this one is a leg of (bracket/oto exits, the oco stop, mleg legs)."""
    leg_ids: list[str] = field(default_factory=list)
    position_intent: str | None = None
    ratio_qty: Decimal | None = None
    """Contracts of an mleg leg per unit of its strategy."""
    session_day: date | None = None
    """New York date of the session a DAY mleg order works in, from the first bar batch after
    its submit (the venue tracks this for every other order)."""

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_mleg(self) -> bool:
        return self.order_class == "mleg"

    @property
    def at_venue(self) -> bool:
        """Whether the simulated venue works this order (mleg orders and held legs it never sees)."""
        return not self.is_mleg and self.status is not OrderStatus.HELD

    @property
    def leaves(self) -> Decimal:
        return self.quantity - self.filled_quantity

    def to_json(self, legs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Return the order as Alpaca's REST and stream bodies carry it, with ``legs`` nested.

        An mleg strategy order has no asset, side or intent of its own (``""``, as Alpaca
        sends them); its legs have no type or limit of their own and carry ``ratio_qty``.
        """
        mean = None if not self.filled_quantity else average(self.filled_value / self.filled_quantity)
        stamp = rfc3339
        data: dict[str, Any] = {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": stamp(self.created_ns),
            "updated_at": stamp(self.updated_ns or self.created_ns),
            "submitted_at": stamp(self.created_ns),
            "filled_at": None if self.filled_ns is None else stamp(self.filled_ns),
            "expired_at": None if self.expired_ns is None else stamp(self.expired_ns),
            "expires_at": None,
            "canceled_at": None if self.canceled_ns is None else stamp(self.canceled_ns),
            "failed_at": None if self.failed_ns is None else stamp(self.failed_ns),
            "replaced_at": None if self.replaced_ns is None else stamp(self.replaced_ns),
            "replaced_by": self.replaced_by,
            "replaces": self.replaces,
            "asset_id": asset_id(self.symbol),
            "symbol": self.symbol,
            "asset_class": self.asset_class,
            "notional": text(self.notional),
            "qty": None if self.notional is not None else text(self.quantity),
            "filled_qty": text(self.filled_quantity),
            "filled_avg_price": None if mean is None else text(mean),
            "order_class": self.order_class,
            "order_type": self.order_type.value,
            "type": self.order_type.value,
            "side": self.side.value,
            "position_intent": self.position_intent,
            "time_in_force": self.time_in_force.value,
            "limit_price": text(self.limit_price),
            "stop_price": text(self.stop_price),
            "status": self.status.value,
            "extended_hours": self.extended_hours,
            "legs": legs,
            "trail_percent": text(self.trail_percent),
            "trail_price": text(self.trail_price),
            "hwm": None,
            "subtag": None,
            "source": None,
            "ratio_qty": text(self.ratio_qty),
        }
        if self.is_mleg and self.parent_id is None:
            data.update(asset_id="", symbol="", asset_class="", side="", position_intent="")
        elif self.is_mleg:
            data.update(order_type="", type="", limit_price=None)
        return data


def asset_id(symbol: str) -> str:
    """Return the stable asset UUID the server gives ``symbol``."""
    return str(uuid.uuid5(NAMESPACE, f"asset:{symbol}"))


def average(price: Decimal) -> Decimal:
    """Round an average price half-even to ``AVERAGE_QUANTUM`` (USD)."""
    return price.quantize(AVERAGE_QUANTUM, context=LEDGER_CONTEXT)


def instant(query: Mapping[str, str], name: str) -> int | None:
    """Return query[name], an RFC-3339 timestamp or a date, as UTC nanoseconds (None if absent).

    Raises:
        PaperApiError: 422 if it is not a timestamp.
    """
    value = query.get(name)
    if not value:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise invalid(f"invalid {name} {value!r}; expected an RFC-3339 timestamp") from None
    if stamp is pd.NaT:
        raise invalid(f"invalid {name} {value!r}; expected an RFC-3339 timestamp")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value)


def day(query: Mapping[str, str], name: str) -> date | None:
    """Return query[name] as a date (None if absent).

    Raises:
        PaperApiError: 422 if it does not start with ``YYYY-MM-DD``.
    """
    value = query.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise invalid(f"invalid {name} {value!r}; expected YYYY-MM-DD") from None


def _count(query: Mapping[str, str], name: str, default: int, most: int) -> int:
    """Return query[name] as an int in [1, most] (``default`` if absent); 422 otherwise."""
    value = query.get(name)
    if not value:
        return default
    try:
        result = int(value)
    except ValueError:
        raise invalid(f"invalid {name} {value!r}; expected an integer") from None
    if not 1 <= result <= most:
        raise invalid(f"invalid {name} {result}; expected 1 to {most}")
    return result


def _choice(query: Mapping[str, str], name: str, allowed: Sequence[str], default: str | None) -> str | None:
    value = query.get(name) or default
    if value is not None and value not in allowed:
        raise invalid(f"invalid {name} {value!r}; expected one of {list(allowed)}")
    return value


# --------------------------------------------------------------------------- order classes

ORDER_CLASSES = ("simple", "bracket", "oco", "oto", "mleg")
POSITION_INTENTS: dict[str, OrderSide] = {
    "buy_to_open": OrderSide.BUY,
    "buy_to_close": OrderSide.BUY,
    "sell_to_open": OrderSide.SELL,
    "sell_to_close": OrderSide.SELL,
}
MIN_OPTION_LEGS, MAX_OPTION_LEGS = 2, 4


@dataclass(frozen=True, slots=True)
class ExitTerms:
    """The exits a bracket, oco or oto order names (USD per share; None where not given).

    Attributes:
        take_profit: ``take_profit.limit_price``, the limit of the take-profit leg.
        stop_price: ``stop_loss.stop_price``, the trigger of the stop-loss leg.
        stop_limit: ``stop_loss.limit_price``: a stop-limit leg if given, else a stop leg.
    """

    take_profit: Decimal | None
    stop_price: Decimal | None
    stop_limit: Decimal | None


def parse_exits(body: Mapping[str, Any]) -> ExitTerms:
    """Parse ``take_profit`` and ``stop_loss`` (each optional here; the order class decides).

    Raises:
        PaperApiError: 422 for a part that is not an object or a price missing or not > 0.
    """
    take_profit, stop_loss = _object(body, "take_profit"), _object(body, "stop_loss")
    limit = stop = stop_limit = None
    if take_profit is not None:
        limit = positive(take_profit, "limit_price", "take_profit.limit_price")
        if limit is None:
            raise invalid("take_profit.limit_price is required when take_profit is given")
    if stop_loss is not None:
        stop = positive(stop_loss, "stop_price", "stop_loss.stop_price")
        if stop is None:
            raise invalid("stop_loss.stop_price is required when stop_loss is given")
        stop_limit = positive(stop_loss, "limit_price", "stop_loss.limit_price")
    return ExitTerms(limit, stop, stop_limit)


def _object(body: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"invalid {name} {value!r}; expected a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class OptionLegTerms:
    """One leg of an mleg order: ``ratio`` contracts of ``symbol`` per unit of the strategy."""

    symbol: str
    ratio: Decimal
    side: OrderSide
    position_intent: str | None


def parse_option_legs(body: Mapping[str, Any]) -> list[OptionLegTerms]:
    """Parse the ``legs`` of an mleg order: 2 to 4 distinct symbols, whole ``ratio_qty`` > 0,
    a ``side`` or a ``position_intent`` (both: they must agree).

    Raises:
        PaperApiError: 422 naming the offending leg and value.
    """
    legs = body.get("legs")
    if not isinstance(legs, list) or not MIN_OPTION_LEGS <= len(legs) <= MAX_OPTION_LEGS:
        got = f"{len(legs)} legs" if isinstance(legs, list) else repr(legs)
        raise invalid(f"an mleg order needs {MIN_OPTION_LEGS} to {MAX_OPTION_LEGS} legs, got {got}")
    parsed: list[OptionLegTerms] = []
    for k, leg in enumerate(legs):
        where = f"legs[{k}]"
        if not isinstance(leg, dict):
            raise invalid(f"{where} must be a JSON object, got {leg!r}")
        symbol = leg.get("symbol")
        if not isinstance(symbol, str) or not symbol.strip():
            raise invalid(f"{where}.symbol must be an OCC option symbol, got {symbol!r}")
        ratio = positive(leg, "ratio_qty", f"{where}.ratio_qty")
        if ratio is None or ratio != ratio.to_integral_value():
            raise invalid(
                f"{where}.ratio_qty must be a whole number of contracts > 0, got {leg.get('ratio_qty')!r}"
            )
        intent = leg.get("position_intent")
        if intent is not None and (not isinstance(intent, str) or intent not in POSITION_INTENTS):
            raise invalid(
                f"invalid {where}.position_intent {intent!r}; expected one of {list(POSITION_INTENTS)}"
            )
        side_value = leg.get("side")
        if side_value is None and intent is None:
            raise invalid(f"{where} needs a side or a position_intent")
        try:
            side = POSITION_INTENTS[intent] if side_value is None else OrderSide(side_value)
        except ValueError:
            raise invalid(f"invalid {where}.side {side_value!r}; expected buy or sell") from None
        if intent is not None and POSITION_INTENTS[intent] is not side:
            raise invalid(f"{where}: position_intent {intent!r} contradicts side {side.value!r}")
        parsed.append(OptionLegTerms(symbol.strip().upper(), Decimal(int(ratio)), side, intent))
    symbols = [leg.symbol for leg in parsed]
    if len(set(symbols)) != len(symbols):
        raise invalid(f"the legs of an mleg order must have distinct symbols, got {symbols}")
    return parsed


# --------------------------------------------------------------------------- option contracts

DEFAULT_CONTRACT_LIMIT, MAX_CONTRACT_LIMIT = 100, 10_000
_CONTRACT_STATUSES = ("active", "inactive")
_EXERCISE_STYLES = ("american", "european")


@dataclass(frozen=True, slots=True)
class ListedOption:
    """One option contract the paper server lists on ``/v2/options/contracts``.

    Attributes:
        contract: the instrument: root, expiry, right, strike (USD) and multiplier (shares).
        underlying_symbol: the underlying's ticker; None for the OCC root (they differ for
            e.g. SPXW options on SPX).
        status: ``"active"`` or ``"inactive"`` (listed, not tradable).
        style: ``"american"`` or ``"european"`` exercise.
        close_price: the contract's last close, USD per share, if known.

    Raises:
        ExecutionError: for a status, style or close price outside those values.
    """

    contract: OptionContract
    underlying_symbol: str | None = None
    status: str = "active"
    style: str = "american"
    close_price: Decimal | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.contract, OptionContract):
            raise ExecutionError(f"ListedOption.contract must be an OptionContract, got {self.contract!r}")
        if self.status not in _CONTRACT_STATUSES:
            raise ExecutionError(
                f"ListedOption.status must be one of {_CONTRACT_STATUSES}, got {self.status!r}"
            )
        if self.style not in _EXERCISE_STYLES:
            raise ExecutionError(f"ListedOption.style must be one of {_EXERCISE_STYLES}, got {self.style!r}")
        if self.close_price is not None and not (
            isinstance(self.close_price, Decimal) and self.close_price.is_finite() and self.close_price >= 0
        ):
            raise ExecutionError(f"ListedOption.close_price must be a Decimal >= 0, got {self.close_price!r}")

    @property
    def symbol(self) -> str:
        return self.contract.occ_symbol

    @property
    def underlying(self) -> str:
        return self.underlying_symbol or self.contract.underlying

    @property
    def id(self) -> str:
        return asset_id(self.symbol)

    def to_json(self) -> dict[str, Any]:
        """Return the contract as Alpaca's ``OptionContract`` JSON."""
        contract = self.contract
        right = "call" if contract.right is OptionRight.CALL else "put"
        return {
            "id": self.id,
            "symbol": self.symbol,
            "name": f"{self.underlying} {contract.expiry:%b %d %Y} {text(contract.strike)} {right.title()}",
            "status": self.status,
            "tradable": self.status == "active",
            "expiration_date": contract.expiry.isoformat(),
            "root_symbol": contract.underlying,
            "underlying_symbol": self.underlying,
            "underlying_asset_id": asset_id(self.underlying),
            "type": right,
            "style": self.style,
            "strike_price": text(contract.strike),
            "multiplier": text(contract.multiplier),
            "size": text(contract.multiplier),
            "open_interest": None,
            "open_interest_date": None,
            "close_price": text(self.close_price),
            "close_price_date": None,
        }


def listed_option(item: str | OptionContract | ListedOption) -> ListedOption:
    """Return ``item`` as a listing: an OCC symbol, an :class:`OptionContract` or a listing.

    Raises:
        ExecutionError: for anything else, or a string that is not an OCC option symbol.
    """
    if isinstance(item, ListedOption):
        return item
    if isinstance(item, OptionContract):
        return ListedOption(item)
    if isinstance(item, str):
        try:
            return ListedOption(OptionContract.from_occ(item))
        except AmcpError as exc:
            raise ExecutionError(f"cannot list option contract {item!r}: {exc}") from None
    raise ExecutionError(
        f"an option contract must be an OCC symbol, OptionContract or ListedOption, got {item!r}"
    )


def select_contracts(listings: Sequence[ListedOption], query: Mapping[str, str]) -> dict[str, Any]:
    """Answer ``GET /v2/options/contracts``: ``listings`` (sorted by symbol) filtered and paged.

    Filters: ``underlying_symbols`` (comma list), ``status`` (default active),
    ``expiration_date``, ``expiration_date_gte``/``_lte``, ``root_symbol``, ``type``, ``style``,
    ``strike_price_gte``/``_lte``; ``limit`` (default 100, at most 10,000) contracts per page,
    from ``page_token`` (the ``next_page_token`` of the previous page: the next symbol).

    Raises:
        PaperApiError: 422 for an invalid parameter.
    """
    underlyings = {s.strip().upper() for s in query.get("underlying_symbols", "").split(",") if s.strip()}
    status = _choice(query, "status", _CONTRACT_STATUSES, "active")
    right = _choice(query, "type", ("call", "put"), None)
    style = _choice(query, "style", _EXERCISE_STYLES, None)
    root = (query.get("root_symbol") or "").strip().upper()
    on = day(query, "expiration_date")
    after, before = day(query, "expiration_date_gte"), day(query, "expiration_date_lte")
    low, high = number(query, "strike_price_gte"), number(query, "strike_price_lte")
    limit = _count(query, "limit", DEFAULT_CONTRACT_LIMIT, MAX_CONTRACT_LIMIT)
    chosen = [
        listing
        for listing in listings
        if (not underlyings or listing.underlying in underlyings)
        and listing.status == status
        and (right is None or listing.contract.right.value == right)
        and (style is None or listing.style == style)
        and (not root or listing.contract.underlying == root)
        and (on is None or listing.contract.expiry == on)
        and (after is None or listing.contract.expiry >= after)
        and (before is None or listing.contract.expiry <= before)
        and (low is None or listing.contract.strike >= low)
        and (high is None or listing.contract.strike <= high)
    ]
    start = 0
    token = query.get("page_token")
    if token:
        symbols = [listing.symbol for listing in chosen]
        start = bisect.bisect_left(symbols, token)
        if start == len(symbols) or symbols[start] != token:
            raise invalid(f"invalid page_token {token!r}: no such contract in this query")
    page = chosen[start : start + limit]
    following = chosen[start + limit] if start + limit < len(chosen) else None
    return {
        "option_contracts": [listing.to_json() for listing in page],
        "next_page_token": None if following is None else following.symbol,
    }


# --------------------------------------------------------------------------- account activities

ACTIVITY_TYPES = frozenset(
    "FILL ACATC ACATS CFEE CIL CSD CSW DIV DIVCGL DIVCGS DIVNRA DIVROC DIVTXEX DIVWH EXTRD FEE FXTRD "
    "INT INTPNL JNLC JNLS MA MEM NC OCT OPASN OPCSH OPEXC OPEXP OPTRD PTC REORG SPIN SPLIT SWP VOF WH".split()
)
"""Alpaca's account activity types; the paper server produces FILL only."""
MAX_ACTIVITY_PAGE = 100


@dataclass(frozen=True, slots=True)
class FillActivity:
    """One FILL account activity (one execution); ``id`` is the ``execution_id`` of its trade update.

    Quantities are shares or contracts, ``price`` USD per share; ``ts_ns`` UTC nanoseconds.
    """

    id: str
    account_id: str
    ts_ns: int
    price: Decimal
    quantity: Decimal
    side: OrderSide
    symbol: str
    leaves: Decimal
    order_id: str
    cumulative: Decimal
    order_status: OrderStatus

    def to_json(self) -> dict[str, Any]:
        """Return the activity as Alpaca's ``TradeActivity`` JSON."""
        return {
            "id": self.id,
            "account_id": self.account_id,
            "activity_type": "FILL",
            "transaction_time": rfc3339(self.ts_ns),
            "type": "fill" if self.order_status is OrderStatus.FILLED else "partial_fill",
            "price": text(self.price),
            "qty": text(self.quantity),
            "side": self.side.value,
            "symbol": self.symbol,
            "leaves_qty": text(self.leaves),
            "order_id": self.order_id,
            "cum_qty": text(self.cumulative),
            "order_status": self.order_status.value,
        }


def activity_types(query: Mapping[str, str], path_type: str | None) -> frozenset[str]:
    """The activity types asked for: the path's, else ``activity_types`` (comma list), else all.

    Raises:
        PaperApiError: 422 for an unknown type.
    """
    names = [path_type] if path_type is not None else [
        name.strip().upper() for name in query.get("activity_types", "").split(",") if name.strip()
    ]
    unknown = sorted(set(names) - ACTIVITY_TYPES)
    if unknown:
        raise invalid(f"unknown activity type(s) {unknown}; expected some of {sorted(ACTIVITY_TYPES)}")
    return frozenset(names) if names else ACTIVITY_TYPES


def select_activities(
    activities: Sequence[FillActivity], query: Mapping[str, str], types: frozenset[str]
) -> list[dict[str, Any]]:
    """Answer ``GET /v2/account/activities``: ``activities`` (in time order) filtered and paged.

    ``date`` (a New York date) or ``after``/``until`` (exclusive bounds on the transaction
    time), ``direction`` (``desc`` by default), ``page_size`` (default and most 100) and
    ``page_token`` (the id of the last activity of the previous page).

    Raises:
        PaperApiError: 422 for an invalid parameter, ``date`` with ``after`` or ``until``, or a
            ``page_token`` that names no activity of the query.
    """
    on = day(query, "date")
    after, until = instant(query, "after"), instant(query, "until")
    if on is not None and (after is not None or until is not None):
        raise invalid("date cannot be combined with after or until")
    direction = _choice(query, "direction", ("asc", "desc"), "desc")
    page_size = _count(query, "page_size", MAX_ACTIVITY_PAGE, MAX_ACTIVITY_PAGE)
    if "FILL" not in types:
        return []
    chosen = [
        activity
        for activity in activities
        if (on is None or new_york_date(activity.ts_ns) == on)
        and (after is None or activity.ts_ns > after)
        and (until is None or activity.ts_ns < until)
    ]
    if direction == "desc":
        chosen.reverse()
    start = 0
    token = query.get("page_token")
    if token:
        ids = [activity.id for activity in chosen]
        if token not in ids:
            raise invalid(f"invalid page_token {token!r}: no such activity in this query")
        start = ids.index(token) + 1
    return [activity.to_json() for activity in chosen[start : start + page_size]]
