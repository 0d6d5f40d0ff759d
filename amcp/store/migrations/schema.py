"""The tables of the trading state, as the newest migration leaves them.

:mod:`amcp.store.state` reads and writes them; ``env.py`` compares against them. Revision scripts
never import this module: each is frozen at the schema it creates. Decimal amounts are TEXT
holding the exact ``str(Decimal)`` (identical on SQLite and PostgreSQL, never float); timestamps
are BIGINT UTC nanoseconds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

import sqlalchemy as sa

__all__ = ["ACCOUNT_SNAPSHOTS", "ANOMALIES", "FILLS", "METADATA", "ORDERS", "PNL", "VERSION_TABLE"]

#: Alembic's version table for this schema (not ``alembic_version``, so the state can share a
#: database with other Alembic-managed applications).
VERSION_TABLE: Final = "amcp_state_alembic_version"


class _DecimalText(sa.types.TypeDecorator[Decimal]):
    """A Decimal stored as its exact text (``str(value)``), identical on every database."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


METADATA: Final = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
ORDERS: Final = sa.Table(
    "trading_orders",
    METADATA,
    sa.Column("client_order_id", sa.String(128), primary_key=True),
    sa.Column("broker_order_id", sa.String(128), nullable=True),
    sa.Column("strategy_id", sa.String(128), nullable=True),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("side", sa.String(8), nullable=False),
    sa.Column("quantity", _DecimalText(), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("filled_quantity", _DecimalText(), nullable=False),
    sa.Column("filled_notional", _DecimalText(), nullable=False),
    sa.Column("average_fill_price", _DecimalText(), nullable=True),
    sa.Column("fees", _DecimalText(), nullable=False),
    sa.Column("replaced_by", sa.String(128), nullable=True),
    sa.Column("command", sa.Text(), nullable=False),
    sa.Column("created_ns", sa.BigInteger(), nullable=False),
    sa.Column("submitted_ns", sa.BigInteger(), nullable=True),
    sa.Column("updated_ns", sa.BigInteger(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Index("ix_trading_orders_broker_order_id", "broker_order_id", unique=True),
    sa.Index("ix_trading_orders_status", "status"),
    sa.Index("ix_trading_orders_symbol", "symbol"),
)
FILLS: Final = sa.Table(
    "trading_fills",
    METADATA,
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column(
        "client_order_id", sa.String(128), sa.ForeignKey("trading_orders.client_order_id"), nullable=False
    ),
    sa.Column("trade_id", sa.String(128), nullable=False),
    sa.Column("broker_order_id", sa.String(128), nullable=False),
    sa.Column("strategy_id", sa.String(128), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("side", sa.String(8), nullable=False),
    sa.Column("quantity", _DecimalText(), nullable=False),
    sa.Column("price", _DecimalText(), nullable=False),
    sa.Column("fee", _DecimalText(), nullable=False),
    sa.Column("liquidity", sa.String(8), nullable=False),
    sa.Column("ts_ns", sa.BigInteger(), nullable=False),
    # Per order: the simulated venue numbers trades from 1 in every run.
    sa.UniqueConstraint("client_order_id", "trade_id"),
    sa.Index("ix_trading_fills_symbol", "symbol"),
    sa.Index("ix_trading_fills_ts_ns", "ts_ns"),
)
ACCOUNT_SNAPSHOTS: Final = sa.Table(
    "trading_account_snapshots",
    METADATA,
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("ts_ns", sa.BigInteger(), nullable=False),
    sa.Column("cash", _DecimalText(), nullable=False),
    sa.Column("equity", _DecimalText(), nullable=False),
    sa.Column("buying_power", _DecimalText(), nullable=False),
    sa.Column("raw", sa.Text(), nullable=False),
    sa.Index("ix_trading_account_snapshots_ts_ns", "ts_ns"),
)
PNL: Final = sa.Table(
    "trading_pnl",
    METADATA,
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("ts_ns", sa.BigInteger(), nullable=False),
    sa.Column("realized", _DecimalText(), nullable=False),
    sa.Column("unrealized", _DecimalText(), nullable=False),
    sa.Column("fees", _DecimalText(), nullable=False),
    sa.Index("ix_trading_pnl_ts_ns", "ts_ns"),
)
ANOMALIES: Final = sa.Table(
    "trading_anomalies",
    METADATA,
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("ts_ns", sa.BigInteger(), nullable=False),
    sa.Column("client_order_id", sa.String(128), nullable=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("event", sa.Text(), nullable=False),
    sa.Index("ix_trading_anomalies_client_order_id", "client_order_id"),
)
