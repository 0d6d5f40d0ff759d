"""Exception hierarchy: one base per package, messages that carry the values involved.

On the order path a failed check is an event with a reason code (``OrderDenied``), never an
exception; these exceptions are for programming errors and bad input at a boundary.
"""

from __future__ import annotations


class AmcpError(Exception):
    """Root of every exception raised by amcp."""


class ConfigError(AmcpError):
    """A configuration file or value is invalid."""


class DataError(AmcpError):
    """A data file or data frame is missing, unreadable or malformed."""


class DomainError(AmcpError):
    """A domain object was built or used with invalid values."""


class InvalidTransitionError(DomainError):
    """An order was asked to move to a status its current status cannot reach."""


class ExecutionError(AmcpError):
    """The venue, OMS or execution algorithms were used incorrectly."""


class PortfolioError(AmcpError):
    """The ledger was given an impossible fill or instrument."""


class RiskError(AmcpError):
    """The risk engine was used incorrectly (a failed check is an event, not this)."""


class StoreError(AmcpError):
    """The journal or another store could not read or write."""
