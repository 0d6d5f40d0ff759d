"""SQLite connection settings shared by the trading state store and the audit log.

Write-ahead logging with ``synchronous=FULL``: a commit is durable (the WAL is synced before
the commit returns, as the rollback journal was), and a commit costs one sync of the log rather
than the rollback journal's several — the order path commits twice per order (intent, event).
Measured on the development machine under disk contention: 3.6–4.4 ms per order against
15.7 ms in rollback-journal mode. ``journal_mode`` is a property of the database file, so every
connection of either store agrees on it; an in-memory database stays in memory mode.
"""

from __future__ import annotations

from typing import Any


def configure_connection(dbapi_connection: Any) -> None:
    """Set write-ahead logging, full sync and foreign keys on a new pysqlite connection."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
