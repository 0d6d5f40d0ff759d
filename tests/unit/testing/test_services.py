"""PrivatePostgres and PrivateRedis: real restarts and crashes on a fixed port, clean teardown."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from amcp.testing.services import HOST, PrivatePostgres, PrivateRedis, ServiceError
from tests.conftest import require


def _require_postgres() -> None:
    require(PrivatePostgres.available(),
            "PostgreSQL server binaries (initdb, postgres, pg_isready) or, as root, a 'postgres' user are missing")


def _require_redis() -> None:
    require(PrivateRedis.available(), "redis-server is not on PATH")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    _require_postgres()
    with PrivatePostgres() as server:
        yield server


@pytest.fixture
def running_postgres(postgres: PrivatePostgres) -> PrivatePostgres:
    """The module's server, started again if a failed test left it down."""
    if not postgres.running:
        postgres.start()
    return postgres


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    _require_redis()
    with PrivateRedis() as server:
        yield server


def _process_tree(pid: int) -> set[int]:
    """``pid`` and every live process descended from it (PostgreSQL's backends lead process
    groups of their own, so the tree is followed by parent id, from /proc)."""
    require(Path("/proc").is_dir(), "this check reads /proc (Linux)")
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended while listing
        state, parent = text.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            parents[int(stat.parent.name)] = int(parent)
    tree = {pid} if pid in parents else set()
    grew = True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def _alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (a zombie has ended: not counted)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _connection_refused(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def _write_table(url: str, name: str, rows: int) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"CREATE TABLE {name} (x int)"))
            connection.execute(sa.text(f"INSERT INTO {name} SELECT generate_series(1, {rows})"))
    finally:
        engine.dispose()


def _read_table(url: str, name: str) -> list[int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(f"SELECT x FROM {name} ORDER BY x")).scalars())
    finally:
        engine.dispose()


def test_postgres_keeps_committed_rows_across_a_clean_restart_on_the_same_url(
        running_postgres: PrivatePostgres) -> None:
    url, pid = running_postgres.url, running_postgres.pid
    _write_table(url, "clean_restart", 3)

    running_postgres.stop()
    assert not running_postgres.running and _connection_refused(running_postgres.port)
    running_postgres.start()

    assert running_postgres.url == url and running_postgres.pid != pid
    assert _read_table(url, "clean_restart") == [1, 2, 3]


def test_postgres_recovers_committed_rows_after_a_kill(running_postgres: PrivatePostgres) -> None:
    engine = sa.create_engine(running_postgres.url)  # a live session: its backend dies with the server
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE killed (x int)"))
        connection.execute(sa.text("INSERT INTO killed VALUES (7)"))
    assert running_postgres.pid is not None
    processes = _process_tree(running_postgres.pid)
    assert len(processes) > 2  # the postmaster, its background workers and the session's backend

    running_postgres.kill()
    assert _alive(processes) == set()  # the postmaster and every backend died at once
    running_postgres.start()  # crash recovery replays the log

    assert "database system was interrupted" in running_postgres.log_tail(200)
    with pytest.raises(sa.exc.OperationalError), engine.connect() as stale:  # died with the old server
        stale.execute(sa.text("SELECT 1"))
    with engine.connect() as connection:  # the pool reconnects to the same URL
        assert list(connection.execute(sa.text("SELECT x FROM killed")).scalars()) == [7]
    engine.dispose()


def test_postgres_restart_runs_stop_then_start(running_postgres: PrivatePostgres) -> None:
    _write_table(running_postgres.url, "restarted", 2)
    before = running_postgres.pid

    running_postgres.restart()

    assert running_postgres.running and running_postgres.pid != before
    assert _read_table(running_postgres.url, "restarted") == [1, 2]


def test_postgres_creates_the_named_database_and_leaves_no_process_or_directory_on_close() -> None:
    _require_postgres()
    with PrivatePostgres(database="orders_db") as server:
        assert server.url.endswith(f"127.0.0.1:{server.port}/orders_db")
        _write_table(server.url, "t", 1)
        assert server.pid is not None and server.directory.is_dir()
        processes, directory = _process_tree(server.pid), server.directory
    assert _alive(processes) == set()
    assert not directory.exists()
    assert _connection_refused(server.port)


def test_redis_restart_loses_the_data_and_serves_again_on_the_same_url(private_redis: PrivateRedis) -> None:
    client = redis.Redis.from_url(private_redis.url, socket_timeout=2)
    client.set("k", "v")
    client.xadd("s", {"f": "1"})
    url = private_redis.url

    private_redis.stop()
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    private_redis.start()

    assert private_redis.url == url
    assert client.ping() is True  # the same client reconnects to the same address
    assert client.get("k") is None and client.xlen("s") == 0  # nothing was kept on disk
    assert not any(private_redis.directory.glob("*.rdb")) and not any(private_redis.directory.glob("*.aof"))
    client.close()


def test_redis_kill_then_start_serves_again(private_redis: PrivateRedis) -> None:
    client = redis.Redis.from_url(private_redis.url, socket_timeout=2)
    client.set("k", "v")
    assert private_redis.pid is not None
    processes = _process_tree(private_redis.pid)

    private_redis.kill()
    assert not private_redis.running and _alive(processes) == set()
    assert _connection_refused(private_redis.port)
    private_redis.start()

    client.set("k", "after")
    assert client.get("k") == b"after"
    client.close()


def test_redis_close_leaves_no_process_or_directory_and_cannot_start_again() -> None:
    _require_redis()
    server = PrivateRedis()
    with server:
        assert server.pid is not None
        processes, directory = _process_tree(server.pid), server.directory
    assert _alive(processes) == set() and not directory.exists()
    assert _connection_refused(server.port)
    server.close()  # idempotent
    with pytest.raises(ServiceError, match="closed"):
        server.start()


def test_start_on_a_taken_port_fails_with_the_server_log_tail() -> None:
    _require_redis()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((HOST, 0))
        squatter.listen(1)
        server = PrivateRedis(port=squatter.getsockname()[1])
        with pytest.raises(ServiceError, match=r"exited with code \d+ while starting; log tail:\n") as raised:
            server.start()
    assert "Address already in use" in str(raised.value)
    assert not server.running
    server.close()


def test_misuse_is_refused_with_the_state_named(private_redis: PrivateRedis) -> None:
    with pytest.raises(ServiceError, match="already running"):
        private_redis.start()
    private_redis.stop()
    with pytest.raises(ServiceError, match="cannot stop, it is not running"):
        private_redis.stop()
    with pytest.raises(ServiceError, match="cannot kill, it is not running"):
        private_redis.kill()
    with pytest.raises(ServiceError, match="port must be an int"):
        PrivateRedis(port=70_000)
