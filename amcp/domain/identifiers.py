"""Typed identifiers.

Each id is a ``str`` subclass: hashable, cheap, serialisable as a plain string, yet a distinct
type so a ``StrategyId`` is never passed where a ``ClientOrderId`` is expected. Construction
validates the value.
"""

from __future__ import annotations

import hashlib
import re

from amcp.errors import DomainError

_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-/ ]{1,128}$")


class _Identifier(str):
    """Base of typed ids: a non-empty string of at most 128 safe characters."""

    __slots__ = ()

    def __new__(cls, value: str) -> _Identifier:
        if not isinstance(value, str) or not _ID_PATTERN.match(value):
            raise DomainError(
                f"{cls.__name__} must be 1-128 characters of letters, digits and ._:-/ "
                f"(got {value!r})"
            )
        return super().__new__(cls, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str.__repr__(self)})"


class StrategyId(_Identifier):
    """Identifies one configured strategy instance, e.g. ``momentum-1``."""

    __slots__ = ()


class ClientOrderId(_Identifier):
    """The id we choose for an order; Alpaca accepts up to 128 characters."""

    __slots__ = ()


class VenueOrderId(_Identifier):
    """The id the venue (simulated or Alpaca) assigns to an accepted order."""

    __slots__ = ()


class TradeId(_Identifier):
    """Identifies one execution (fill) at the venue."""

    __slots__ = ()


class RunId(_Identifier):
    """Identifies one run of a job (backtest, paper session)."""

    __slots__ = ()


def derive_client_order_id(strategy_id: str, ts_ns: int, sequence: int, symbol: str) -> ClientOrderId:
    """Derive a deterministic client order id from an intent.

    The same intent (strategy, decision time, sequence within the cycle, symbol) always gives
    the same id, so a resent intent is recognised as a duplicate rather than sent twice.

    Returns:
        An id of the form ``<strategy>-<ts>-<seq>-<8 hex digest>``.
    """
    digest = hashlib.blake2b(
        f"{strategy_id}|{ts_ns}|{sequence}|{symbol}".encode(), digest_size=4
    ).hexdigest()
    return ClientOrderId(f"{strategy_id}-{ts_ns}-{sequence}-{digest}")
