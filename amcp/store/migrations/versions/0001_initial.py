"""Create the trading state tables: orders, fills, account snapshots, P&L, anomalies.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Decimal amounts are TEXT holding the exact ``str(Decimal)``; timestamps are BIGINT UTC ns.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "trading_orders",
        sa.Column("client_order_id", sa.String(128), nullable=False),
        sa.Column("broker_order_id", sa.String(128), nullable=True),
        sa.Column("strategy_id", sa.String(128), nullable=True),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("quantity", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("filled_quantity", sa.Text(), nullable=False),
        sa.Column("filled_notional", sa.Text(), nullable=False),
        sa.Column("average_fill_price", sa.Text(), nullable=True),
        sa.Column("fees", sa.Text(), nullable=False),
        sa.Column("replaced_by", sa.String(128), nullable=True),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("submitted_ns", sa.BigInteger(), nullable=True),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client_order_id", name="pk_trading_orders"),
    )
    op.create_index("ix_trading_orders_broker_order_id", "trading_orders", ["broker_order_id"], unique=True)
    op.create_index("ix_trading_orders_status", "trading_orders", ["status"])
    op.create_index("ix_trading_orders_symbol", "trading_orders", ["symbol"])

    op.create_table(
        "trading_fills",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_order_id", sa.String(128), nullable=False),
        sa.Column("trade_id", sa.String(128), nullable=False),
        sa.Column("broker_order_id", sa.String(128), nullable=False),
        sa.Column("strategy_id", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("quantity", sa.Text(), nullable=False),
        sa.Column("price", sa.Text(), nullable=False),
        sa.Column("fee", sa.Text(), nullable=False),
        sa.Column("liquidity", sa.String(8), nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_trading_fills"),
        sa.ForeignKeyConstraint(
            ["client_order_id"],
            ["trading_orders.client_order_id"],
            name="fk_trading_fills_client_order_id_trading_orders",
        ),
        sa.UniqueConstraint("client_order_id", "trade_id", name="uq_trading_fills_client_order_id_trade_id"),
    )
    op.create_index("ix_trading_fills_symbol", "trading_fills", ["symbol"])
    op.create_index("ix_trading_fills_ts_ns", "trading_fills", ["ts_ns"])

    op.create_table(
        "trading_account_snapshots",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("cash", sa.Text(), nullable=False),
        sa.Column("equity", sa.Text(), nullable=False),
        sa.Column("buying_power", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_trading_account_snapshots"),
    )
    op.create_index("ix_trading_account_snapshots_ts_ns", "trading_account_snapshots", ["ts_ns"])

    op.create_table(
        "trading_pnl",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("realized", sa.Text(), nullable=False),
        sa.Column("unrealized", sa.Text(), nullable=False),
        sa.Column("fees", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_trading_pnl"),
    )
    op.create_index("ix_trading_pnl_ts_ns", "trading_pnl", ["ts_ns"])

    op.create_table(
        "trading_anomalies",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts_ns", sa.BigInteger(), nullable=False),
        sa.Column("client_order_id", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_trading_anomalies"),
    )
    op.create_index("ix_trading_anomalies_client_order_id", "trading_anomalies", ["client_order_id"])


def downgrade() -> None:
    op.drop_table("trading_anomalies")
    op.drop_table("trading_pnl")
    op.drop_table("trading_account_snapshots")
    op.drop_table("trading_fills")
    op.drop_table("trading_orders")
