"""The docker backend: real containers from the locally built (or official) image."""

from __future__ import annotations

import psycopg
import pytest

from perfkit.postgres import PostgresServer, ServerSettings, create_server
from perfkit.postgres.docker import DockerServer, docker_client, perfkit_containers

pytestmark = pytest.mark.docker


def test_container_is_reached_through_loopback_only(docker_pg_server: PostgresServer) -> None:
    assert isinstance(docker_pg_server, DockerServer)
    ports = docker_pg_server.container.attrs["HostConfig"]["PortBindings"]
    bindings = [b for spec in ports.values() for b in spec]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)
    assert docker_pg_server.host == "127.0.0.1"


def test_container_honours_user_password_and_database(docker_pg_server: PostgresServer) -> None:
    with psycopg.connect(docker_pg_server.dsn) as conn:
        row = conn.execute("SELECT current_user, current_database()").fetchone()
    assert row == (docker_pg_server.settings.user, docker_pg_server.settings.dbname)


def test_server_settings_reach_the_container(docker_pg_server: PostgresServer) -> None:
    with psycopg.connect(docker_pg_server.dsn) as conn:
        assert conn.execute("SHOW max_connections").fetchone() == ("300",)


def test_memory_is_the_container_figure(docker_pg_server: PostgresServer) -> None:
    assert 4 * 2**20 < docker_pg_server.memory_bytes() < 2**30


def test_log_text_is_the_servers_output(docker_pg_server: PostgresServer) -> None:
    assert "database system is ready to accept connections" in (docker_pg_server.log_text() or "")


def test_stop_then_start_keeps_the_port_and_data(docker_pg_server: PostgresServer) -> None:
    with psycopg.connect(docker_pg_server.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    port = docker_pg_server.port
    docker_pg_server.take_down()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(docker_pg_server.dsn, connect_timeout=2)
    docker_pg_server.bring_up()
    assert docker_pg_server.port == port
    with psycopg.connect(docker_pg_server.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)


def test_pause_makes_connections_time_out(docker_pg_server: PostgresServer) -> None:
    docker_pg_server.pause()
    try:
        with pytest.raises(psycopg.OperationalError, match="timeout"):
            psycopg.connect(docker_pg_server.dsn, connect_timeout=2)
    finally:
        docker_pg_server.resume()
    assert docker_pg_server.is_ready()


def test_container_is_removed_on_stop(docker_or_skip: None) -> None:
    server = create_server(ServerSettings(backend="docker"))
    assert isinstance(server, DockerServer)
    with server:
        container_id = server.container_id
    ids = {c.id for c in perfkit_containers(docker_client())}
    assert container_id not in ids


def test_testcontainers_runs_the_local_image_unchanged(docker_or_skip: None) -> None:
    from testcontainers.community.postgres import PostgresContainer

    from perfkit.postgres.docker import configure_testcontainers, resolve_image

    client = docker_client()
    configure_testcontainers(client)
    container = PostgresContainer(resolve_image(client, None), driver=None)
    container.ports = {"5432/tcp": ("127.0.0.1", None)}  # publish on loopback only
    with container:  # uses testcontainers' own readiness probe (psql inside the container)
        port = container.get_exposed_port(5432)
        dsn = f"postgresql://test:test@127.0.0.1:{port}/test"
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
