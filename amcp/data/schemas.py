"""The market-data store's layout: one :class:`DatasetKind` per dataset, with its schema.

Every kind lives under ``{root}/market-data/{path}`` as a hive-partitioned, zstd-compressed
Parquet dataset. This module is the contract shared by the store, the ingest pipelines, the
synthetic generator and the live feed: column names, types, partition keys and the key that
makes a row unique (writes are idempotent on it).

Time: every timestamp column is ``timestamp[ns, tz=UTC]``. A daily bar's ``ts`` is midnight
America/New_York of its session date, in UTC (Alpaca's convention, so ingested Alpaca bars are
stored unchanged); intraday bars are stamped at the start of their interval.

Partitioning: daily kinds partition by symbol only (one file per symbol: a 22-year history is
about 5,500 rows, and a full-universe read opens one file per symbol instead of 22); intraday,
tick and option kinds by symbol (or underlying) and year, since one symbol-year of minute bars
is already ~100,000 rows. The partition columns are also stored in the files, so a single file
is self-describing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from amcp.errors import DataError

TS = pa.timestamp("ns", tz="UTC")

BAR_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("ts", TS, nullable=False),
        pa.field("open", pa.float64()),
        pa.field("high", pa.float64()),
        pa.field("low", pa.float64()),
        pa.field("close", pa.float64()),
        pa.field("volume", pa.float64()),
        pa.field("vwap", pa.float64()),
        pa.field("trade_count", pa.int64()),
    ]
)
"""OHLCV bars (daily, intraday and index bars). ``vwap`` and ``trade_count`` may be null."""

TICK_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("ts", TS, nullable=False),
        pa.field("trade_id", pa.int64(), nullable=False),
        pa.field("price", pa.float64()),
        pa.field("size", pa.float64()),
        pa.field("exchange", pa.string()),
        pa.field("conditions", pa.string()),
        pa.field("tape", pa.string()),
    ]
)
"""Trades. ``conditions`` is the venue's condition codes joined with commas."""

OPTION_CHAIN_SCHEMA = pa.schema(
    [
        pa.field("underlying", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("quote_ts", TS, nullable=False),
        pa.field("expiry", pa.date32(), nullable=False),
        pa.field("strike", pa.float64(), nullable=False),
        pa.field("right", pa.string(), nullable=False),
        pa.field("bid", pa.float64()),
        pa.field("ask", pa.float64()),
        pa.field("bid_size", pa.float64()),
        pa.field("ask_size", pa.float64()),
        pa.field("last", pa.float64()),
        pa.field("volume", pa.float64()),
        pa.field("open_interest", pa.float64()),
        pa.field("underlying_price", pa.float64()),
        pa.field("iv", pa.float64()),
        pa.field("delta", pa.float64()),
        pa.field("gamma", pa.float64()),
        pa.field("theta", pa.float64()),
        pa.field("vega", pa.float64()),
        pa.field("rho", pa.float64()),
    ]
)
"""Option quotes as the vendor gave them. ``symbol`` is the OCC symbol; ``right`` is ``"C"`` or
``"P"``; the vendor's ``iv`` and greeks are kept as given (vega per 1.00 vol, theta per year);
any of the numeric fields may be null."""

OPTION_GREEKS_SCHEMA = pa.schema(
    [
        pa.field("underlying", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("quote_ts", TS, nullable=False),
        pa.field("expiry", pa.date32(), nullable=False),
        pa.field("strike", pa.float64(), nullable=False),
        pa.field("right", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("delta", pa.float64()),
        pa.field("gamma", pa.float64()),
        pa.field("vega", pa.float64()),
        pa.field("theta", pa.float64()),
        pa.field("rho", pa.float64()),
        pa.field("vanna", pa.float64()),
        pa.field("volga", pa.float64()),
        pa.field("charm", pa.float64()),
    ]
)
"""Greeks computed by amcp (``model`` names the pricer, e.g. ``"bsm"``)."""

OPTION_IV_SCHEMA = pa.schema(
    [
        pa.field("underlying", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("quote_ts", TS, nullable=False),
        pa.field("expiry", pa.date32(), nullable=False),
        pa.field("strike", pa.float64(), nullable=False),
        pa.field("right", pa.string(), nullable=False),
        pa.field("iv_bid", pa.float64()),
        pa.field("iv_mid", pa.float64()),
        pa.field("iv_ask", pa.float64()),
        pa.field("reason", pa.string()),
    ]
)
"""Implied vols solved by amcp; ``reason`` says why a value is null (e.g. below intrinsic)."""

CORPORATE_ACTION_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("ex_date", pa.date32(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("ratio", pa.float64()),
        pa.field("cash", pa.float64()),
    ]
)
"""Splits and cash dividends. ``action`` is ``"split"`` (``ratio`` = new shares per old share,
so a 2-for-1 split has ratio 2 and a 1-for-10 reverse split 0.1) or ``"dividend"`` (``cash`` per
share, paid to holders before ``ex_date``)."""

UNIVERSE_SCHEMA = pa.schema(
    [
        pa.field("universe", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("start_date", pa.date32(), nullable=False),
        pa.field("end_date", pa.date32()),
    ]
)
"""Point-in-time index membership: ``symbol`` is a member of ``universe`` from ``start_date``
to ``end_date`` inclusive; a null ``end_date`` means it still is."""


@dataclass(frozen=True)
class DatasetKind:
    """One dataset of the store.

    Attributes:
        name: the key used in APIs and configs, e.g. ``"equities/daily"``.
        path: folder under ``{root}/market-data``.
        schema: the exact Arrow schema of its rows.
        partition_by: hive partition columns, outermost first. ``"year"`` is derived from
            ``time_column``; every other partition column is a column of ``schema``.
        key: columns that identify a row; a write replaces stored rows with the same key.
        time_column: the column date-range reads filter on.
        symbol_column: the column symbol reads filter on.
    """

    name: str
    path: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    key: tuple[str, ...]
    time_column: str
    symbol_column: str


_OPTION_KEY = ("symbol", "quote_ts")

KINDS: dict[str, DatasetKind] = {
    kind.name: kind
    for kind in (
        DatasetKind("equities/daily", "equities/daily", BAR_SCHEMA, ("symbol",), ("symbol", "ts"), "ts", "symbol"),
        DatasetKind(
            "equities/intraday", "equities/intraday", BAR_SCHEMA, ("symbol", "year"), ("symbol", "ts"), "ts", "symbol"
        ),
        DatasetKind(
            "equities/tick",
            "equities/tick",
            TICK_SCHEMA,
            ("symbol", "year"),
            ("symbol", "ts", "trade_id"),
            "ts",
            "symbol",
        ),
        DatasetKind("indices", "indices", BAR_SCHEMA, ("symbol",), ("symbol", "ts"), "ts", "symbol"),
        DatasetKind(
            "options/chains",
            "options/chains",
            OPTION_CHAIN_SCHEMA,
            ("underlying", "year"),
            _OPTION_KEY,
            "quote_ts",
            "underlying",
        ),
        DatasetKind(
            "options/greeks",
            "options/greeks",
            OPTION_GREEKS_SCHEMA,
            ("underlying", "year"),
            (*_OPTION_KEY, "model"),
            "quote_ts",
            "underlying",
        ),
        DatasetKind(
            "options/implied_vol",
            "options/implied_vol",
            OPTION_IV_SCHEMA,
            ("underlying", "year"),
            _OPTION_KEY,
            "quote_ts",
            "underlying",
        ),
        DatasetKind(
            "reference/corporate_actions",
            "reference/corporate_actions",
            CORPORATE_ACTION_SCHEMA,
            ("symbol",),
            ("symbol", "ex_date", "action"),
            "ex_date",
            "symbol",
        ),
        DatasetKind(
            "reference/universes",
            "reference/universes",
            UNIVERSE_SCHEMA,
            ("universe",),
            ("universe", "symbol", "start_date"),
            "start_date",
            "symbol",
        ),
    )
}
"""Every dataset kind, by name."""


def kind_of(name: str) -> DatasetKind:
    """The :class:`DatasetKind` called ``name``; a :class:`DataError` naming the choices if none is."""
    try:
        return KINDS[name]
    except KeyError:
        raise DataError(f"unknown dataset kind {name!r}; known kinds: {', '.join(KINDS)}") from None
