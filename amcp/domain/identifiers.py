"""Typed identifiers.

Each id is a ``str`` subclass: hashable, cheap, serialisable as a plain string, yet a distinct
type so a ``StrategyId`` is never passed where a ``ClientOrderId`` is expected. Construction
validates the value.
"""

from __future__ import annotations

import hashlib
import re
from typing import Self

from amcp.errors import DomainError

_MAX_LENGTH = 128
_BLAKE2B_4 = hashlib.blake2b(digest_size=4)  # empty; only ever copied, never updated
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

    @classmethod
    def _from_checked_parts(cls, value: str) -> Self:
        """Wrap an id amcp composed itself from parts already known to be valid, unchecked.

        Only for values built from a validated id, integers, ``-`` and hex digits (all in the
        allowed alphabet) and no longer than 128 characters: the pattern check could not fail.
        """
        return str.__new__(cls, value)

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


ALGO_CHILD_TAG_PREFIX = "algo:"
"""Tags of execution-algorithm children start with this (``algo:<algo>:<parent id>``)."""


LEG_TAG_PREFIX = "leg-of:"
"""Tags of orders the broker created as legs of a parent start with this (``leg-of:<parent id>``)."""

RESERVED_TAG_PREFIXES = (ALGO_CHILD_TAG_PREFIX, LEG_TAG_PREFIX)
"""Tag prefixes only amcp itself writes; a strategy's intent may not carry them."""


def algo_child_tag(algo: str, parent_id: str) -> str:
    """The tag an execution algorithm's children carry: it names the algorithm and the parent.

    The pre-trade duplicate-intent check treats each such child by its own (derived) client
    order id: equal slices of one parent are not duplicates of each other, while a child sent
    again is still refused as a duplicate client order id.
    """
    return f"{ALGO_CHILD_TAG_PREFIX}{algo}:{parent_id}"


def derive_client_order_id(strategy_id: str, ts_ns: int, sequence: int, symbol: str) -> ClientOrderId:
    """Derive a deterministic client order id from an intent.

    The same intent (strategy, decision time, sequence within the cycle, symbol) always gives
    the same id, so a resent intent is recognised as a duplicate rather than sent twice.

    Returns:
        An id of the form ``<strategy>-<ts>-<seq>-<8 hex digest>``.
    """
    strategy_text, ts_text, sequence_text = f"{strategy_id}", f"{ts_ns}", f"{sequence}"  # formatted once
    hasher = _BLAKE2B_4.copy()  # the same as hashlib.blake2b(data, digest_size=4), set up once
    hasher.update(f"{strategy_text}|{ts_text}|{sequence_text}|{symbol}".encode())
    value = f"{strategy_text}-{ts_text}-{sequence_text}-{hasher.hexdigest()}"
    if (
        type(strategy_id) is StrategyId  # validated when built: only allowed characters
        and type(ts_ns) is int
        and type(sequence) is int
        and len(value) <= _MAX_LENGTH
    ):
        return ClientOrderId._from_checked_parts(value)
    return ClientOrderId(value)
