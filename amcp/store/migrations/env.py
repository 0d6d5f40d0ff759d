"""Alembic environment of the trading state schema. Alembic loads this file; never import it.

:meth:`amcp.store.state.TradingStateStore.upgrade` passes an open connection in
``config.attributes["connection"]``; without one (a hand-made ``Config`` with only
``sqlalchemy.url``) an engine is created from the URL. Offline mode (``--sql``) renders the SQL.
On PostgreSQL a transaction-scoped advisory lock serialises concurrent upgrades, so two processes
starting together cannot both create the tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from amcp.store.migrations.schema import METADATA, VERSION_TABLE

# "amcp" in ASCII: the key of the advisory lock held while migrating on PostgreSQL.
_LOCK_KEY = 0x616D6370


def _migrate(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        context.run_migrations()


def _run() -> None:
    config = context.config
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=METADATA,
            version_table=VERSION_TABLE,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as new_connection:
            _migrate(new_connection)
    finally:
        engine.dispose()


_run()
