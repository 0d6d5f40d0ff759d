"""Build :class:`~amcp.options.chain.OptionChain` objects from data sources, and store them.

Sources: end-of-day vendor files (the historicaloptiondata.com layout, as a data frame or a CSV),
Alpaca (alpaca-py's contract and snapshot models), and the market-data store's
``options/chains`` dataset (:mod:`amcp.data.schemas`), which :func:`write_chain` fills.

Every loader checks each row and drops the bad ones instead of failing; a
:class:`ChainLoadReport` counts the dropped rows by :class:`DropReason` and shows the first of
each. A row is dropped when (the first matching reason, in this order, is the one counted):

- Alpaca only, first: ``other_underlying`` (a contract on another underlying) and ``after_as_of``
  (its quote or trade is stamped after ``as_of``: nothing may see the future);
- ``bad_date``: the quote date or the expiration is missing or not a date;
- ``bad_symbol``: the OCC symbol does not parse (or names an impossible date);
- ``adjusted_contract``: the OCC root differs from the underlying, or the contract size from the
  chain's multiplier (an adjusted, non-standard deliverable);
- ``bad_right``: the right is not call/put; ``bad_strike``: not finite and > 0;
  ``bad_spot``: the underlying price is not finite and > 0;
- ``symbol_mismatch``: the symbol's right, strike or expiry disagree with the row's columns (an
  expiration column one day after the symbol's date is accepted: vendors kept the Saturday
  expiration of monthly options; the symbol's Friday, the last trading day, is used);
- ``bad_number``: a price, volume or open interest is negative, infinite or not a number;
- ``crossed_quote``: bid above ask; ``expired``: expiry before the quote date;
- ``spot_mismatch``: the row's underlying price differs from the most common one of its chain;
- ``duplicate``: the same contract again in the same chain (the first row is kept);
- ``no_contract`` (Alpaca): a snapshot without a listed contract.

Values normalised rather than dropped: an ask of 0 means no offer (NaN), a last of 0 no trade
(NaN), a vendor implied vol ≤ 0 none (NaN); a bid of 0 is kept (a zero bid is a quote).

Quote time of an end-of-day file: its quote date's 16:00 New York close. ``rate`` and
``div_yield`` are not in any of these sources: they are arguments, default 0.0 (no discounting,
no carry; :func:`amcp.options.surface.fit_surface` implies each expiry's forward from put-call
parity, so a fitted surface depends on the rate only through discounting).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa

from amcp.data.schemas import OPTION_CHAIN_SCHEMA
from amcp.data.store import MarketDataStore, WriteResult
from amcp.errors import DataError
from amcp.options.chain import CLOSE_NEW_YORK, OptionChain, years_to_expiry

if TYPE_CHECKING:
    from alpaca.data.models.snapshots import OptionsSnapshot
    from alpaca.trading.models import OptionContract as AlpacaOptionContract

__all__ = [
    "CHAINS_KIND",
    "ChainLoadReport",
    "DropReason",
    "LoadedChain",
    "LoadedChains",
    "chain_from_alpaca",
    "chain_from_vendor_csv",
    "chains_from_vendor_frame",
    "read_chain",
    "write_chain",
]

CHAINS_KIND = "options/chains"
"""The store's dataset of option quotes (``{root}/market-data/options/chains/underlying=U/year=Y``)."""

_NEW_YORK = ZoneInfo("America/New_York")
_OCC_PATTERN = r"^(?P<root>[A-Z0-9.]{1,6}) *(?P<date>\d{6})(?P<right>[CP])(?P<strike>\d{8})$"
_VENDOR_COLUMNS = ("underlying", "underlying_last", "optionroot", "type", "expiration", "quotedate", "strike",
                   "last", "bid", "ask", "volume", "openinterest", "impliedvol")
_CSV_COLUMNS = {"UnderlyingSymbol": "underlying", "UnderlyingPrice": "underlying_last",
                "OptionSymbol": "optionroot", "Type": "type", "Expiration": "expiration",
                "DataDate": "quotedate", "Strike": "strike", "Last": "last", "Bid": "bid", "Ask": "ask",
                "Volume": "volume", "OpenInterest": "openinterest", "IVMean": "impliedvol"}
_VENDOR_DATE_FORMAT = "%m/%d/%Y"
_RIGHTS = {"call": "C", "c": "C", "put": "P", "p": "P"}
_EXAMPLES = 1
"""Rows shown per drop reason in a report."""


class DropReason(StrEnum):
    """Why a row was left out of a chain (see the module docstring)."""

    BAD_DATE = "bad_date"
    BAD_SYMBOL = "bad_symbol"
    ADJUSTED_CONTRACT = "adjusted_contract"
    SYMBOL_MISMATCH = "symbol_mismatch"
    BAD_RIGHT = "bad_right"
    BAD_STRIKE = "bad_strike"
    BAD_SPOT = "bad_spot"
    BAD_NUMBER = "bad_number"
    CROSSED_QUOTE = "crossed_quote"
    EXPIRED = "expired"
    SPOT_MISMATCH = "spot_mismatch"
    DUPLICATE = "duplicate"
    OTHER_UNDERLYING = "other_underlying"
    AFTER_AS_OF = "after_as_of"
    NO_CONTRACT = "no_contract"


@dataclass(frozen=True)
class ChainLoadReport:
    """What a loader kept and dropped.

    Attributes:
        source: the file, frame or source the rows came from.
        rows_in: rows read.
        rows_kept: rows in the chains built.
        dropped: rows dropped per reason (reasons that dropped nothing are absent).
        examples: per reason, the first dropped row: its position (0-based data row; a CSV's
            line number is that plus 2), symbol and the offending values.
    """

    source: str
    rows_in: int
    rows_kept: int
    dropped: Mapping[DropReason, int]
    examples: Mapping[DropReason, str]

    @property
    def rows_dropped(self) -> int:
        """All rows dropped, whatever the reason."""
        return sum(self.dropped.values())

    def summary(self) -> str:
        """One line: the counts and the first example of each reason."""
        reasons = "; ".join(f"{reason.value} {count} (e.g. {self.examples[reason]})"
                            for reason, count in self.dropped.items())
        kept = f"{self.source}: kept {self.rows_kept} of {self.rows_in} rows"
        return f"{kept}; dropped {reasons}" if reasons else kept


class LoadedChains(NamedTuple):
    """Chains keyed by ``(underlying, quote date)``, and the load report."""

    chains: dict[tuple[str, date], OptionChain]
    report: ChainLoadReport


class LoadedChain(NamedTuple):
    """One chain and its load report."""

    chain: OptionChain
    report: ChainLoadReport


# ------------------------------------------------------------------------------ row validation


class _Drops:
    """Assigns each row its first drop reason, remembering an example of each."""

    def __init__(self, frame: pd.DataFrame, source: str, extra_in: int = 0) -> None:
        self.frame = frame
        self.source = source
        self.reason = np.full(len(frame), None, dtype=object)
        self.counts: dict[DropReason, int] = {}
        self.examples: dict[DropReason, str] = {}
        self.extra_in = extra_in

    @property
    def alive(self) -> np.ndarray:
        return np.equal(self.reason, None)

    def drop(self, mask: Any, reason: DropReason, detail: str) -> None:
        """Drop the alive rows where ``mask``; ``detail`` is formatted with the row's columns."""
        hit = np.asarray(mask, dtype=bool) & self.alive
        if not hit.any():
            return
        self.reason[hit] = reason
        self.count(reason, int(hit.sum()), self._describe(int(np.flatnonzero(hit)[0]), detail))

    def count(self, reason: DropReason, n: int, example: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
        self.examples.setdefault(reason, example)

    def _describe(self, row: int, detail: str) -> str:
        values = self.frame.iloc[row].to_dict()
        return f"row {int(self.frame.index[row])} ({values.get('symbol', '?')}): " + detail.format(**values)

    def report(self, rows_kept: int) -> ChainLoadReport:
        ordered = {reason: self.counts[reason] for reason in DropReason if reason in self.counts}
        return ChainLoadReport(self.source, len(self.frame) + self.extra_in, rows_kept, ordered,
                               {reason: self.examples[reason] for reason in ordered})


def _numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Float values (NaN where missing) and where a present value is not a finite number."""
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    present = raw.notna().to_numpy() & (raw.astype(str).str.strip() != "").to_numpy()
    return values, present & ~np.isfinite(values)


def _dates(raw: pd.Series, fmt: str | None) -> np.ndarray:
    if fmt is None:
        parsed = pd.to_datetime(raw, errors="coerce")
    else:
        parsed = pd.to_datetime(raw.astype(str).str.strip(), format=fmt, errors="coerce")
    return parsed.to_numpy(dtype="datetime64[D]")


def _validate(frame: pd.DataFrame, drops: _Drops, multiplier: float | None = None) -> pd.DataFrame:
    """Check the normalised columns of ``frame`` and return its good rows, normalised.

    ``frame`` holds, as given: ``underlying``, ``quote_date`` (datetime64[D]), ``spot``,
    ``symbol``, ``right``, ``expiration`` (datetime64[D]), ``strike``, ``bid``, ``ask``, ``last``,
    ``volume``, ``open_interest``, ``iv`` and optionally ``size``.
    """
    out = pd.DataFrame(index=frame.index)
    out["underlying"] = frame["underlying"].astype(str).str.strip().str.upper()
    out["quote_date"] = frame["quote_date"]
    symbol = frame["symbol"].astype(str).str.strip().str.upper()
    parts = symbol.str.extract(_OCC_PATTERN)
    occ_date = pd.to_datetime(parts["date"], format="%y%m%d", errors="coerce").to_numpy(dtype="datetime64[D]")
    out["symbol"] = (parts["root"] + parts["date"] + parts["right"] + parts["strike"]).fillna(symbol)

    drops.drop(np.isnat(frame["quote_date"].to_numpy()) | np.isnat(frame["expiration"].to_numpy()),
               DropReason.BAD_DATE, "quote date {quote_date!s} / expiration {expiration!s}")
    drops.drop(parts["root"].isna().to_numpy() | np.isnat(occ_date), DropReason.BAD_SYMBOL,
               "not an OCC symbol ROOT+YYMMDD+C/P+8 digits")
    drops.drop((parts["root"] != out["underlying"]).to_numpy(), DropReason.ADJUSTED_CONTRACT,
               "root differs from underlying {underlying}")
    if multiplier is not None and "size" in frame:
        size, _ = _numbers(frame["size"])
        drops.drop(size != multiplier, DropReason.ADJUSTED_CONTRACT,
                   f"size {{size}} != multiplier {multiplier:g}")
    right = frame["right"].astype(str).str.strip().str.lower().map(_RIGHTS)
    drops.drop(right.isna().to_numpy(), DropReason.BAD_RIGHT, "right {right!r} is not call/put")
    strike, bad_strike = _numbers(frame["strike"])
    drops.drop(bad_strike | ~(strike > 0), DropReason.BAD_STRIKE, "strike {strike!r}")
    spot, bad_spot = _numbers(frame["spot"])
    drops.drop(bad_spot | ~(spot > 0), DropReason.BAD_SPOT, "underlying price {spot!r}")
    expiration = frame["expiration"].to_numpy(dtype="datetime64[D]")
    occ_strike = pd.to_numeric(parts["strike"], errors="coerce").to_numpy(dtype=np.float64) / 1000.0
    date_gap = (expiration - occ_date).astype("timedelta64[D]").astype(np.float64)
    mismatch = ((parts["right"] != right).to_numpy() | (np.abs(occ_strike - strike) > 5e-4)
                | ~np.isin(date_gap, (0.0, 1.0)))
    drops.drop(mismatch, DropReason.SYMBOL_MISMATCH,
               "symbol disagrees with right {right} / strike {strike} / expiration {expiration!s}")
    numbers = {}
    bad_number = np.zeros(len(frame), dtype=bool)
    for name in ("bid", "ask", "last", "volume", "open_interest"):
        values, bad = _numbers(frame[name])
        bad_number |= bad | (values < 0)
        numbers[name] = values
    drops.drop(bad_number, DropReason.BAD_NUMBER,
               "bid {bid!r} ask {ask!r} last {last!r} volume {volume!r} open interest {open_interest!r}")
    ask = np.where(numbers["ask"] > 0, numbers["ask"], np.nan)
    drops.drop(numbers["bid"] > ask, DropReason.CROSSED_QUOTE, "bid {bid} > ask {ask}")
    drops.drop(occ_date < frame["quote_date"].to_numpy(dtype="datetime64[D]"), DropReason.EXPIRED,
               "expiry before quote date {quote_date!s}")

    out["spot"] = spot
    out["expiry"] = occ_date
    out["is_call"] = (right == "C").to_numpy()
    out["strike"] = strike
    out["bid"], out["ask"] = numbers["bid"], ask
    out["last"] = np.where(numbers["last"] > 0, numbers["last"], np.nan)
    out["volume"], out["open_interest"] = numbers["volume"], numbers["open_interest"]
    iv, _ = _numbers(frame["iv"])
    out["vendor_iv"] = np.where(iv > 0, iv, np.nan)

    alive = out[drops.alive]
    if len(alive):
        # one spot per chain: the most common; then one row per contract
        common = alive.groupby(["underlying", "quote_date"])["spot"].agg(lambda s: s.mode().iloc[0])
        chain_spot = common.reindex(pd.MultiIndex.from_frame(out[["underlying", "quote_date"]])).to_numpy()
        drops.drop(out["spot"].to_numpy() != chain_spot, DropReason.SPOT_MISMATCH,
                   "underlying price {spot} differs from its chain's")
        key = out[["underlying", "quote_date", "expiry", "is_call", "strike"]]
        duplicate = np.zeros(len(out), dtype=bool)
        alive_now = drops.alive
        duplicate[alive_now] = key[alive_now].duplicated(keep="first").to_numpy()
        drops.drop(duplicate, DropReason.DUPLICATE, "the same contract again")
    return out[drops.alive]


def _chain(rows: pd.DataFrame, as_of: datetime, rate: float, div_yield: float,
           multiplier: float) -> OptionChain:
    """An :class:`OptionChain` from validated rows of one underlying and quote time."""
    expiry = rows["expiry"].to_numpy(dtype="datetime64[D]")
    order = OptionChain.sort_order(expiry, rows["is_call"].to_numpy(), rows["strike"].to_numpy())
    rows = rows.iloc[order]
    expiry = expiry[order]
    t_by_expiry = {e: years_to_expiry(as_of, e.astype(date)) for e in np.unique(expiry)}
    return OptionChain(
        underlying=str(rows["underlying"].iloc[0]), as_of=as_of, spot=float(rows["spot"].iloc[0]), rate=rate,
        div_yield=div_yield, expiry=expiry, t_years=np.array([t_by_expiry[e] for e in expiry]),
        strike=rows["strike"].to_numpy(), is_call=rows["is_call"].to_numpy(), bid=rows["bid"].to_numpy(),
        ask=rows["ask"].to_numpy(), last=rows["last"].to_numpy(), volume=rows["volume"].to_numpy(),
        open_interest=rows["open_interest"].to_numpy(), symbol=rows["symbol"].to_numpy(dtype=str),
        vendor_iv=rows["vendor_iv"].to_numpy(), multiplier=multiplier,
    )


def _close(day: date) -> datetime:
    return datetime.combine(day, CLOSE_NEW_YORK, tzinfo=_NEW_YORK)


def _check_carry(rate: float, div_yield: float, multiplier: float) -> None:
    for name, value in (("rate", rate), ("div_yield", div_yield), ("multiplier", multiplier)):
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise DataError(f"{name} must be a finite number, got {value!r}")
    if multiplier <= 0:
        raise DataError(f"multiplier must be > 0, got {multiplier!r}")


# ------------------------------------------------------------------------------ vendor files


def chains_from_vendor_frame(frame: pd.DataFrame, *, rate: float = 0.0, div_yield: float = 0.0,
                             multiplier: float = 100.0, source: str = "vendor frame") -> LoadedChains:
    """Build one chain per (underlying, quote date) from a historicaloptiondata.com frame.

    Columns used (names matched after stripping spaces, so the vendor's ``" exchange"`` is
    fine; others are ignored): ``underlying``, ``underlying_last``, ``optionroot`` (the OCC
    symbol), ``type`` (call/put), ``expiration`` and ``quotedate`` (MM/DD/YYYY), ``strike``,
    ``last``, ``bid``, ``ask``, ``volume``, ``openinterest``, ``impliedvol``. Each chain's
    ``as_of`` is its quote date's 16:00 New York close.

    Args:
        frame: the vendor's rows.
        rate: risk-free rate (continuous, annual) given to every chain; the files carry none.
        div_yield: dividend yield given to every chain.
        multiplier: units of underlying per contract.
        source: names the rows in the report and errors (e.g. the file path).

    Returns:
        The chains by ``(underlying, quote date)`` and a :class:`ChainLoadReport` of the rows
        dropped (see the module docstring for the reasons).

    Raises:
        DataError: if ``frame`` is not a data frame, lacks a column (all missing ones named), or
            ``rate``/``div_yield``/``multiplier`` is not a usable number.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
    _check_carry(rate, div_yield, multiplier)
    renamed = frame.rename(columns=lambda name: str(name).strip())
    missing = [name for name in _VENDOR_COLUMNS if name not in renamed.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; "
                        f"the vendor layout needs {list(_VENDOR_COLUMNS)}")
    raw = renamed.reset_index(drop=True)
    normalised = pd.DataFrame({
        "underlying": raw["underlying"], "quote_date": _dates(raw["quotedate"], _VENDOR_DATE_FORMAT),
        "spot": raw["underlying_last"], "symbol": raw["optionroot"], "right": raw["type"],
        "expiration": _dates(raw["expiration"], _VENDOR_DATE_FORMAT), "strike": raw["strike"],
        "bid": raw["bid"], "ask": raw["ask"], "last": raw["last"], "volume": raw["volume"],
        "open_interest": raw["openinterest"],
        "iv": raw["impliedvol"],
    })
    drops = _Drops(normalised, source)
    good = _validate(normalised, drops)
    chains = {}
    for (underlying, quote_day), rows in good.groupby(["underlying", "quote_date"], sort=True):
        day = pd.Timestamp(quote_day).date()
        chains[(str(underlying), day)] = _chain(rows, _close(day), rate, div_yield, multiplier)
    return LoadedChains(chains, drops.report(len(good)))


def chain_from_vendor_csv(path: str | Path, *, rate: float = 0.0, div_yield: float = 0.0,
                          multiplier: float = 100.0) -> LoadedChain:
    """Build the chain of a historicaloptiondata.com CSV of one underlying and one quote date.

    Columns (as in ``agilent_chain_2016-01-05.csv``): ``UnderlyingSymbol``, ``UnderlyingPrice``,
    ``OptionSymbol``, ``Type``, ``Expiration``, ``DataDate``, ``Strike``, ``Last``, ``Bid``,
    ``Ask``, ``Volume``, ``OpenInterest``, ``IVMean``; others are ignored. Values are read as
    text, so a malformed value drops its row (``bad_number``) instead of failing the file.

    Args:
        path: a local path or fsspec URL (pandas opens it).
        rate, div_yield, multiplier: as :func:`chains_from_vendor_frame`.

    Returns:
        The chain and the :class:`ChainLoadReport` (a row's CSV line is its position + 2).

    Raises:
        DataError: if the file cannot be read, lacks a column, holds no valid row, or holds more
            than one (underlying, quote date).
    """
    try:
        raw = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read the option chain CSV: {exc}") from exc
    missing = [name for name in _CSV_COLUMNS if name not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; "
                        f"the vendor CSV layout needs {list(_CSV_COLUMNS)}")
    vendor = raw.rename(columns=_CSV_COLUMNS)[list(_CSV_COLUMNS.values())]
    loaded = chains_from_vendor_frame(vendor, rate=rate, div_yield=div_yield, multiplier=multiplier,
                                      source=str(path))
    if len(loaded.chains) != 1:
        found = [f"{u} {d}" for u, d in loaded.chains] or "none"
        raise DataError(f"{path}: expected the chain of one underlying on one date, found {found} "
                        f"({loaded.report.summary()})")
    (chain,) = loaded.chains.values()
    return LoadedChain(chain, loaded.report)


# ------------------------------------------------------------------------------ Alpaca


def _stamp_after(stamp: datetime | None, as_of: datetime) -> bool:
    return stamp is not None and stamp > as_of


def chain_from_alpaca(
    underlying: str,
    spot: float,
    contracts: Sequence[AlpacaOptionContract],
    snapshots: Mapping[str, OptionsSnapshot],
    as_of: datetime,
    rate: float = 0.0,
    div_yield: float = 0.0,
    *,
    multiplier: float = 100.0,
) -> LoadedChain:
    """Build a chain from alpaca-py's listed contracts and their snapshots.

    The contracts (``TradingClient.get_option_contracts``) define the chain; each one's quote
    comes from its snapshot (``OptionHistoricalDataClient.get_option_chain``, keyed by symbol):
    bid and ask from ``latest_quote``, last from ``latest_trade``, the vendor IV from
    ``implied_volatility``. Open interest is the contract's ``open_interest`` (as of its
    ``open_interest_date``). Volume is NaN: alpaca-py's ``OptionsSnapshot`` keeps no daily bar.
    A contract without a snapshot stays in the chain unquoted (NaN bid and ask).

    Args:
        underlying: the underlying's symbol.
        spot: the underlying's price at ``as_of``.
        contracts: ``alpaca.trading.models.OptionContract`` objects.
        snapshots: ``alpaca.data.models.snapshots.OptionsSnapshot`` by OCC symbol.
        as_of: the quote time (timezone-aware); quotes or trades stamped later drop their row.
        rate, div_yield: the chain's rate and dividend yield (continuous, annual).
        multiplier: the standard contract size; contracts of another size are dropped.

    Returns:
        The chain and the :class:`ChainLoadReport` (positions are indices into ``contracts``;
        snapshots without a contract count as extra rows).

    Raises:
        DataError: on a naive ``as_of``, a ``spot`` that is not > 0, an empty ``underlying``, or
            when no contract survives.
    """
    if not isinstance(underlying, str) or not underlying.strip():
        raise DataError(f"alpaca chain: underlying must be a symbol, got {underlying!r}")
    name = underlying.strip().upper()
    if not isinstance(as_of, datetime) or as_of.tzinfo is None:
        raise DataError(f"alpaca chain of {name}: as_of must be a timezone-aware datetime, got {as_of!r}")
    if not isinstance(spot, int | float) or not math.isfinite(spot) or spot <= 0:
        raise DataError(f"alpaca chain of {name}: spot must be a number > 0, got {spot!r}")
    _check_carry(rate, div_yield, multiplier)
    quote_day = np.datetime64(as_of.astimezone(_NEW_YORK).date(), "D")
    records: list[dict[str, Any]] = []
    for contract in contracts:
        snapshot = snapshots.get(contract.symbol)
        quote = snapshot.latest_quote if snapshot is not None else None
        trade = snapshot.latest_trade if snapshot is not None else None
        records.append({
            "underlying": name, "quote_date": quote_day, "spot": float(spot), "symbol": contract.symbol,
            "right": str(getattr(contract.type, "value", contract.type)),
            "expiration": np.datetime64(contract.expiration_date, "D"), "strike": contract.strike_price,
            "size": contract.size, "bid": quote.bid_price if quote else np.nan,
            "ask": quote.ask_price if quote else np.nan, "last": trade.price if trade else np.nan,
            "volume": np.nan, "open_interest": contract.open_interest,
            "iv": snapshot.implied_volatility if snapshot is not None else np.nan,
            "contract_underlying": str(contract.underlying_symbol).strip().upper(),
            "after": _stamp_after(quote.timestamp if quote else None, as_of)
            or _stamp_after(trade.timestamp if trade else None, as_of),
        })
    frame = pd.DataFrame.from_records(records, columns=[
        "underlying", "quote_date", "spot", "symbol", "right", "expiration", "strike", "size", "bid", "ask",
        "last", "volume", "open_interest", "iv", "contract_underlying", "after"])
    frame["quote_date"] = frame["quote_date"].astype("datetime64[s]").to_numpy(dtype="datetime64[D]")
    frame["expiration"] = frame["expiration"].astype("datetime64[s]").to_numpy(dtype="datetime64[D]")
    listed = {contract.symbol for contract in contracts}
    orphans = [symbol for symbol in snapshots if symbol not in listed]
    drops = _Drops(frame, f"alpaca chain of {name} at {as_of.isoformat()}", extra_in=len(orphans))
    drops.drop((frame["contract_underlying"] != name).to_numpy(), DropReason.OTHER_UNDERLYING,
               "the contract's underlying is {contract_underlying}")
    drops.drop(frame["after"].to_numpy(dtype=bool), DropReason.AFTER_AS_OF,
               "quote or trade stamped after as_of")
    if orphans:
        drops.count(DropReason.NO_CONTRACT, len(orphans), f"snapshot {orphans[0]} has no listed contract")
    good = _validate(frame, drops, multiplier)
    if good.empty:
        raise DataError(f"alpaca chain of {name}: no valid contract ({drops.report(0).summary()})")
    return LoadedChain(_chain(good, as_of, rate, div_yield, multiplier), drops.report(len(good)))


# ------------------------------------------------------------------------------ store


def _store(store: MarketDataStore | str) -> MarketDataStore:
    return store if isinstance(store, MarketDataStore) else MarketDataStore(store)


def write_chain(store: MarketDataStore | str, chain: OptionChain) -> WriteResult:
    """Store a chain in the market-data store's ``options/chains`` dataset.

    Layout (:mod:`amcp.data.store`): ``{root}/market-data/options/chains/underlying=<U>/year=<Y>/
    part-0.parquet``, one row per contract keyed by (symbol, quote_ts), ``quote_ts`` being the
    chain's ``as_of``. ``underlying_price`` holds the spot, ``iv`` the vendor IV; sizes and
    greeks are stored null. The schema has no rate, dividend yield or multiplier: give them to
    :func:`read_chain`. Writing the same chain again replaces its rows.

    Args:
        store: a :class:`~amcp.data.store.MarketDataStore` or its URL (local path, ``s3://…``).
        chain: the chain.

    Returns:
        The store's :class:`~amcp.data.store.WriteResult`.

    Raises:
        DataError, StoreError: as :meth:`MarketDataStore.write`.
    """
    n = len(chain)
    null = pa.nulls(n, pa.float64())
    columns: dict[str, Any] = {
        "underlying": pa.array([chain.underlying] * n, pa.string()),
        "symbol": pa.array(chain.symbol.tolist(), pa.string()),
        "quote_ts": pa.array([pd.Timestamp(chain.as_of).tz_convert("UTC").as_unit("ns")] * n,
                             OPTION_CHAIN_SCHEMA.field("quote_ts").type),
        "expiry": pa.array(chain.expiry.astype(date).tolist(), pa.date32()),
        "strike": pa.array(chain.strike),
        "right": pa.array(np.where(chain.is_call, "C", "P").tolist(), pa.string()),
        "bid": pa.array(chain.bid, from_pandas=True), "ask": pa.array(chain.ask, from_pandas=True),
        "bid_size": null, "ask_size": null, "last": pa.array(chain.last, from_pandas=True),
        "volume": pa.array(chain.volume, from_pandas=True),
        "open_interest": pa.array(chain.open_interest, from_pandas=True),
        "underlying_price": pa.array(np.full(n, chain.spot)),
        "iv": pa.array(chain.vendor_iv, from_pandas=True),
    }
    for greek in ("delta", "gamma", "theta", "vega", "rho"):
        columns[greek] = null
    return _store(store).write(CHAINS_KIND, pa.table(columns, schema=OPTION_CHAIN_SCHEMA))


def read_chain(
    store: MarketDataStore | str,
    underlying: str,
    as_of_date: date,
    *,
    rate: float = 0.0,
    div_yield: float = 0.0,
    spot: float | None = None,
    multiplier: float = 100.0,
) -> LoadedChain:
    """Read the chain of ``underlying`` quoted on ``as_of_date`` (a New York date) from the store.

    Of each contract the latest row of the date is taken; the chain's ``as_of`` is the latest
    ``quote_ts`` among them (rows ingested from Alpaca snapshots carry each contract's own quote
    time). Rows go through the checks of the module docstring.

    Args:
        store: a :class:`~amcp.data.store.MarketDataStore` or its URL.
        underlying: the underlying's symbol.
        as_of_date: the quote date.
        rate, div_yield, multiplier: as :func:`chains_from_vendor_frame` (not stored).
        spot: the underlying's price; ``None`` takes the stored ``underlying_price`` of the
            latest row that has one.

    Returns:
        The chain and its :class:`ChainLoadReport`.

    Raises:
        DataError: if nothing is stored for that underlying and date, no spot is stored or
            given, or no stored row is valid.
        StoreError: if a stored file cannot be read.
    """
    _check_carry(rate, div_yield, multiplier)
    name = underlying.strip().upper()
    resolved = _store(store)
    table = resolved.read(CHAINS_KIND, [name], start=as_of_date, end=as_of_date)
    source = f"{resolved.url} {CHAINS_KIND} {name} {as_of_date}"
    if table.num_rows == 0:
        raise DataError(f"{source}: no option quotes stored")
    stored = table.to_pandas().drop_duplicates("symbol", keep="last").reset_index(drop=True)
    latest = stored["quote_ts"].max()
    if spot is None:
        prices = stored.sort_values("quote_ts")["underlying_price"].dropna()
        if prices.empty:
            raise DataError(f"{source}: no underlying_price stored; pass spot")
        spot = float(prices.iloc[-1])
    frame = pd.DataFrame({
        "underlying": stored["underlying"],
        "quote_date": np.full(len(stored), np.datetime64(as_of_date, "D")),
        "spot": np.full(len(stored), spot), "symbol": stored["symbol"], "right": stored["right"],
        "expiration": pd.to_datetime(stored["expiry"]).to_numpy(dtype="datetime64[D]"),
        "strike": stored["strike"],
        "bid": stored["bid"], "ask": stored["ask"], "last": stored["last"], "volume": stored["volume"],
        "open_interest": stored["open_interest"], "iv": stored["iv"],
    })
    drops = _Drops(frame, source)
    good = _validate(frame, drops)
    if good.empty:
        raise DataError(f"{source}: no valid stored row ({drops.report(0).summary()})")
    as_of = latest.to_pydatetime().astimezone(_NEW_YORK)
    return LoadedChain(_chain(good, as_of, rate, div_yield, multiplier), drops.report(len(good)))
