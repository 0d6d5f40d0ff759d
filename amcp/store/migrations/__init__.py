"""Alembic migrations of the trading state schema (:mod:`amcp.store.state`).

Run them through :meth:`amcp.store.state.TradingStateStore.upgrade`, which configures Alembic in
code (no ``alembic.ini``). To write a new revision against a scratch database::

    python -c "from alembic.config import Config; from alembic import command; \\
    c = Config(); c.set_main_option('script_location', 'amcp/store/migrations'); \\
    c.set_main_option('sqlalchemy.url', 'sqlite:///scratch.sqlite'); \\
    command.upgrade(c, 'head'); command.revision(c, 'what it does', autogenerate=True)"

then review the generated file by hand: revisions are frozen in time and must not import the
table definitions from ``amcp.store.state``.
"""
