"""The feature registry: named, documented, point-in-time features of daily bars.

A *series feature* is a function of one symbol's bars (:class:`SeriesInputs`, oldest first) that
returns one value per bar; the value at bar ``t`` may use bars ``0..t`` only (never a later
one — the no-look-ahead test poisons every bar after ``t`` and checks nothing at or before ``t``
changes). ``window`` is how many bars of history the feature needs: values before that are NaN.
A *cross-sectional feature* transforms one series feature across all symbols on each date
(e.g. its rank), so it needs every symbol's value on that date and nothing later.

A *panel* (:class:`PanelInputs`) is N symbols' bars on the same T dates, each column a
``(T, N)`` array (symbol ``i`` in column ``i``). It is a :class:`SeriesInputs` (``len`` is T), and
every series feature accepts one and returns ``(T, N)`` values whose column ``i`` equals the
feature computed on symbol ``i`` alone (features compute along axis 0; a date-only feature, such
as the calendar ones, broadcasts its per-date value to every symbol).
:meth:`FeatureRegistry.compute_panel` computes features over a panel with one call per feature
(instead of one per feature and symbol) and returns a ``(T, N, F)`` array.

Every feature carries its formula: the registering function's docstring, required and shown by
:meth:`FeatureRegistry.describe`.

Modules that define features register them into :data:`REGISTRY` when imported;
:func:`amcp.features.default_registry` imports them all.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from amcp._typing import FloatArray
from amcp.errors import DataError

__all__ = [
    "REGISTRY",
    "CrossSectionalOp",
    "CrossSectionalSpec",
    "FeatureMatrix",
    "FeatureRegistry",
    "FeatureSpec",
    "PanelInputs",
    "SeriesInputs",
]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")

CrossSectionalOp = Literal["rank", "zscore", "demean"]


@dataclass(frozen=True, eq=False)
class SeriesInputs:
    """One symbol's daily bars, oldest first, as float64 arrays of equal length ``T``.

    ``vwap`` is NaN where the source has none (features that need it say which proxy they use);
    ``market`` is a market proxy's close on the same dates (e.g. the equal-weighted universe
    index), for beta and correlation features, or None when unavailable (those features are
    then all NaN). Missing bars (halts, gaps) are NaN rows: features treat them per their
    docstring, never by looking ahead.
    """

    dates: npt.NDArray[np.datetime64]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    vwap: FloatArray
    market: FloatArray | None = None

    def __post_init__(self) -> None:
        self._check_columns((len(self.close),), "series inputs")

    def _check_columns(self, shape: tuple[int, ...], what: str) -> None:
        """Dates ``(T,)`` strictly increasing and every column float64 of ``shape``, made contiguous."""
        dates = np.asarray(self.dates, dtype="datetime64[D]")
        if dates.shape != shape[:1]:
            raise DataError(f"{what}: dates has shape {dates.shape}, expected ({shape[0]},)")
        object.__setattr__(self, "dates", dates)
        for name in ("open", "high", "low", "close", "volume", "vwap", "market"):
            value = getattr(self, name)
            if value is None:
                continue
            column = np.ascontiguousarray(value, dtype=np.float64)
            if column.shape != shape:
                raise DataError(f"{what}: column {name} has shape {column.shape}, expected {shape}")
            object.__setattr__(self, name, column)
        if shape[0] > 1 and not (dates[1:] > dates[:-1]).all():
            raise DataError(f"{what}: dates must be strictly increasing")

    @classmethod
    def from_checked_arrays(cls, dates: np.ndarray, open: FloatArray, high: FloatArray,  # noqa: A002
                            low: FloatArray, close: FloatArray, volume: FloatArray, vwap: FloatArray,
                            market: FloatArray | None) -> SeriesInputs:
        """Build inputs from arrays already known to be valid, unchecked: ``datetime64[D]`` dates
        strictly increasing, float64 contiguous columns of their length (e.g. a request the
        signal service has checked over whole columns)."""
        inputs = object.__new__(cls)
        for name, value in (("dates", dates), ("open", open), ("high", high), ("low", low), ("close", close),
                            ("volume", volume), ("vwap", vwap), ("market", market)):
            object.__setattr__(inputs, name, value)
        return inputs

    def __len__(self) -> int:
        return len(self.close)

    def head(self, count: int) -> SeriesInputs:
        """The first ``count`` bars (what was known at bar ``count - 1``), of the same type
        (a panel's head is a panel)."""
        market = None if self.market is None else self.market[:count]
        return type(self)(self.dates[:count], self.open[:count], self.high[:count], self.low[:count],
                          self.close[:count], self.volume[:count], self.vwap[:count], market)


@dataclass(frozen=True, eq=False)
class PanelInputs(SeriesInputs):
    """N symbols' daily bars on the same ``T`` dates, oldest first: a panel.

    ``dates`` is ``(T,)``, strictly increasing; ``open, high, low, close, volume, vwap`` and
    ``market`` (or None) are float64 of shape ``(T, N)``, symbol ``i`` in column ``i`` (``market``
    holds each symbol's market proxy, usually one series repeated). Column semantics are those of
    :class:`SeriesInputs`; a symbol without a bar on a date has a NaN row there. ``len(panel)`` is
    ``T`` and :attr:`width` is ``N``; build one with :meth:`stack`.
    """

    def __post_init__(self) -> None:
        close = np.asarray(self.close)
        if close.ndim != 2:
            raise DataError(f"panel inputs: column close has shape {close.shape}, expected (T, N)")
        self._check_columns(close.shape, "panel inputs")

    @classmethod
    def stack(cls, inputs: Sequence[SeriesInputs]) -> PanelInputs:
        """The panel of ``inputs`` (one symbol each, column ``i`` = ``inputs[i]``).

        Raises:
            DataError: if ``inputs`` is empty or holds a panel, if their dates differ, or if some
                have a ``market`` and others not.
        """
        series = list(inputs)
        if not series:
            raise DataError("panel inputs: stack needs at least one symbol's inputs")
        for i, one in enumerate(series):
            if isinstance(one, PanelInputs) or np.ndim(one.close) != 1:
                raise DataError(f"panel inputs: stack takes one symbol's SeriesInputs each; "
                                f"input {i} is a panel")
        dates = series[0].dates
        for i, one in enumerate(series[1:], start=1):
            if not np.array_equal(one.dates, dates):
                raise DataError(f"panel inputs: input {i} has different dates from input 0 "
                                f"({len(one.dates)} vs {len(dates)} dates, "
                                f"{_span(one.dates)} vs {_span(dates)}); a panel needs identical dates")
        with_market = [one.market is not None for one in series]
        if any(with_market) and not all(with_market):
            missing = [i for i, has in enumerate(with_market) if not has]
            raise DataError(f"panel inputs: mixed market: inputs {missing[:10]} have no market while others "
                            f"do; give every symbol a market or none")

        def column(name: str) -> FloatArray:
            return np.stack([getattr(one, name) for one in series], axis=1)

        market = column("market") if with_market[0] else None
        return cls(dates, column("open"), column("high"), column("low"), column("close"), column("volume"),
                   column("vwap"), market)

    @property
    def width(self) -> int:
        """``N``, the number of symbols."""
        return int(self.close.shape[1])


_SHARED: weakref.WeakKeyDictionary[SeriesInputs, dict[tuple[object, ...], Any]] = weakref.WeakKeyDictionary()


def shared(inputs: SeriesInputs, key: tuple[object, ...], compute: Callable[[], Any]) -> Any:
    """``compute()`` once per inputs object and ``key``: what several features are built from (MACD's
    line, signal and histogram; the gains and losses of Alpha158's SUMP, SUMN and SUMD) is computed
    once instead of once per feature. Entries live as long as ``inputs`` does; the arrays are read
    by the features, never written."""
    memo = _SHARED.get(inputs)
    if memo is None:
        memo = _SHARED[inputs] = {}
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def _span(dates: npt.NDArray[np.datetime64]) -> str:
    return f"{dates[0]}..{dates[-1]}" if len(dates) else "empty"


@dataclass(frozen=True)
class FeatureSpec:
    """A series feature: ``fn(inputs)`` returns ``len(inputs)`` float64 values, or ``(T, N)`` of them
    for a :class:`PanelInputs` (see the module docstring)."""

    name: str
    window: int
    group: str
    fn: Callable[[SeriesInputs], FloatArray]
    doc: str


@dataclass(frozen=True)
class CrossSectionalSpec:
    """A cross-sectional feature: ``op`` of the series feature ``base`` across symbols, per date.

    ``rank``: the percentile rank in (0, 1] (ties share their average rank; NaN stays NaN and is
    not counted); ``zscore``: (x − mean) / std over the date's non-NaN values (NaN when fewer than
    two or std 0); ``demean``: x − mean.
    """

    name: str
    base: str
    op: CrossSectionalOp
    doc: str


@dataclass(frozen=True, eq=False)
class FeatureMatrix:
    """Series features of one symbol: ``values[t, j]`` is feature ``names[j]`` at bar ``t``."""

    names: tuple[str, ...]
    values: FloatArray


class FeatureRegistry:
    """Named series and cross-sectional features (see the module docstring)."""

    def __init__(self) -> None:
        self._series: dict[str, FeatureSpec] = {}
        self._cross: dict[str, CrossSectionalSpec] = {}

    # ------------------------------------------------------------------ registration

    def register(self, name: str, *, window: int, group: str) -> Callable[
            [Callable[[SeriesInputs], FloatArray]], Callable[[SeriesInputs], FloatArray]]:
        """Decorator: register ``fn`` as the series feature ``name`` (its docstring is the formula).

        Raises:
            DataError: on a bad or taken name, a window < 1, or a function without a docstring.
        """

        def decorate(fn: Callable[[SeriesInputs], FloatArray]) -> Callable[[SeriesInputs], FloatArray]:
            self.add(FeatureSpec(name, window, group, fn, (fn.__doc__ or "").strip()))
            return fn

        return decorate

    def add(self, spec: FeatureSpec) -> None:
        """Register a series feature spec (rules as :meth:`register`)."""
        self._check_name(spec.name)
        if type(spec.window) is not int or spec.window < 1:
            raise DataError(f"feature {spec.name}: window must be an int >= 1, got {spec.window!r}")
        if not spec.doc:
            raise DataError(f"feature {spec.name}: needs a docstring stating its formula and window")
        self._series[spec.name] = spec

    def add_cross_sectional(self, name: str, base: str, op: CrossSectionalOp, doc: str) -> None:
        """Register ``op`` of the series feature ``base`` across symbols as ``name``.

        Raises:
            DataError: on a bad or taken name, an unknown base, an unknown op or an empty doc.
        """
        self._check_name(name)
        if base not in self._series:
            raise DataError(f"cross-sectional feature {name}: unknown base feature {base!r}")
        if op not in ("rank", "zscore", "demean"):
            raise DataError(f"cross-sectional feature {name}: op must be rank, zscore or demean, got {op!r}")
        if not doc.strip():
            raise DataError(f"cross-sectional feature {name}: needs a doc stating its formula")
        self._cross[name] = CrossSectionalSpec(name, base, op, doc.strip())

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise DataError(f"feature name must match {_NAME.pattern}, got {name!r}")
        if name in self._series or name in self._cross:
            raise DataError(f"feature {name!r} is registered already")

    # ------------------------------------------------------------------ lookup

    @property
    def series_names(self) -> tuple[str, ...]:
        """Series feature names, in registration order."""
        return tuple(self._series)

    @property
    def cross_sectional_names(self) -> tuple[str, ...]:
        """Cross-sectional feature names, in registration order."""
        return tuple(self._cross)

    @property
    def names(self) -> tuple[str, ...]:
        """Every feature name: series first, then cross-sectional."""
        return (*self._series, *self._cross)

    def __len__(self) -> int:
        return len(self._series) + len(self._cross)

    def series(self, name: str) -> FeatureSpec:
        """The series feature ``name``.

        Raises:
            DataError: if there is none.
        """
        try:
            return self._series[name]
        except KeyError:
            raise DataError(f"unknown series feature {name!r}") from None

    def cross_sectional(self, name: str) -> CrossSectionalSpec:
        """The cross-sectional feature ``name``.

        Raises:
            DataError: if there is none.
        """
        try:
            return self._cross[name]
        except KeyError:
            raise DataError(f"unknown cross-sectional feature {name!r}") from None

    def group(self, group: str) -> tuple[str, ...]:
        """The series features of ``group``."""
        return tuple(name for name, spec in self._series.items() if spec.group == group)

    def describe(self) -> list[dict[str, object]]:
        """One row per feature: name, kind, window, group or base/op, and its formula."""
        rows: list[dict[str, object]] = [
            {"name": s.name, "kind": "series", "window": s.window, "group": s.group, "doc": s.doc}
            for s in self._series.values()]
        rows.extend({"name": c.name, "kind": "cross_sectional", "base": c.base, "op": c.op, "doc": c.doc}
                    for c in self._cross.values())
        return rows

    # ------------------------------------------------------------------ computation

    def compute(self, inputs: SeriesInputs, names: Iterable[str] | None = None) -> FeatureMatrix:
        """The series features ``names`` (default: all) of one symbol.

        Raises:
            DataError: if a name is unknown or a feature returns the wrong shape or dtype.
        """
        chosen = tuple(self._series) if names is None else tuple(names)
        values = np.empty((len(inputs), len(chosen)), dtype=np.float64)
        for j, name in enumerate(chosen):
            column = np.asarray(self.series(name).fn(inputs))
            if column.shape != (len(inputs),) or column.dtype != np.float64:
                raise DataError(f"feature {name}: returned {column.dtype} of shape {column.shape}, "
                                f"expected float64 of shape ({len(inputs)},)")
            values[:, j] = column
        return FeatureMatrix(chosen, values)

    def compute_panel(self, inputs: PanelInputs, names: Iterable[str] | None = None, *,
                      last: int | None = None) -> FloatArray:
        """The series features ``names`` (default: all) of every symbol of a panel, one call per feature.

        Returns a float64 array of shape ``(T, N, F)``: ``[:, i, j]`` is feature ``names[j]`` of
        symbol ``i``, equal to ``compute`` on that symbol alone. With ``last``, only the last
        ``last`` dates' rows, ``(last, N, F)`` (each feature still runs over the whole panel, so
        recursive ones see all of it): what scoring the latest bar needs, without holding every
        feature's whole history (50 symbols × 140 dates × 211 features is 12 MB).

        Raises:
            DataError: if ``inputs`` is not a :class:`PanelInputs`, a name is unknown, ``last`` is
                not in ``1..T``, or a feature returns the wrong shape or dtype.
        """
        if not isinstance(inputs, PanelInputs):
            raise DataError(f"compute_panel needs PanelInputs, got {type(inputs).__name__} "
                            f"(use compute for one symbol, or PanelInputs.stack)")
        chosen = tuple(self._series) if names is None else tuple(names)
        shape = inputs.close.shape
        rows = shape[0] if last is None else int(last)
        if not 1 <= rows <= shape[0]:
            raise DataError(f"compute_panel: last must be in 1..{shape[0]} (the panel's dates), got {last}")
        values = np.empty((len(chosen), rows, shape[1]), dtype=np.float64)  # each feature's block contiguous
        for j, name in enumerate(chosen):
            column = np.asarray(self.series(name).fn(inputs))
            if column.shape != shape or column.dtype != np.float64:
                raise DataError(f"feature {name}: returned {column.dtype} of shape {column.shape}, "
                                f"expected float64 of shape {shape} (dates × symbols)")
            values[j] = column[shape[0] - rows:]
        return values.transpose(1, 2, 0)

    def compute_cross_sectional(self, name: str, base_values: FloatArray) -> FloatArray:
        """Apply the cross-sectional feature ``name`` to ``base_values`` (dates × symbols)."""
        spec = self.cross_sectional(name)
        return cross_sectional(spec.op, base_values)


def cross_sectional(op: CrossSectionalOp, values: FloatArray) -> FloatArray:
    """``op`` across each row of ``values`` (dates × symbols); see :class:`CrossSectionalSpec`."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"cross-sectional values must be 2-D (dates × symbols), got shape {x.shape}")
    valid = ~np.isnan(x)
    count = valid.sum(axis=1, keepdims=True)
    if op == "rank":
        ranks = rankdata(x, axis=1, nan_policy="omit")  # average ranks of ties; NaN stays NaN
        return np.where(valid, ranks / np.maximum(count, 1), np.nan)
    mean = np.where(count > 0, np.nansum(x, axis=1, keepdims=True) / np.maximum(count, 1), np.nan)
    if op == "demean":
        return x - mean
    if op == "zscore":
        centred = np.where(valid, x - mean, 0.0)
        var = (centred**2).sum(axis=1, keepdims=True) / np.maximum(count - 1, 1)
        std = np.sqrt(var)
        ok = (count >= 2) & (std > 0)
        return np.where(ok & valid, (x - mean) / np.where(ok, std, 1.0), np.nan)
    raise DataError(f"unknown cross-sectional op {op!r}")


def names_in(registry: FeatureRegistry, names: Sequence[str]) -> tuple[str, ...]:
    """``names`` checked against ``registry`` (each must be a series or cross-sectional feature)."""
    known = set(registry.names)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise DataError(f"unknown features: {', '.join(unknown)}")
    return tuple(names)


#: The default registry: feature modules register into it when imported.
REGISTRY = FeatureRegistry()
