"""Setup costs (perfkit.retry.setupcost) measured on real local and docker servers."""

from __future__ import annotations

import math
from collections.abc import Iterator

import psutil
import psycopg
import pytest
from conftest import TEST_SERVER_SETTINGS

from perfkit.errors import ConfigError, ServerStartError
from perfkit.postgres import PostgresServer, ServerSettings, create_server
from perfkit.retry import ContentionSettings, SetupCosts, measure_setup_costs
from perfkit.retry.setupcost import MEASURED

N = 60


def _client_backends(server: PostgresServer) -> int:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _sockets_to(server: PostgresServer) -> int:
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == server.port and c.status == psutil.CONN_ESTABLISHED
    )


@pytest.fixture(scope="module", params=["local", "docker"])
def measured(request: pytest.FixtureRequest) -> Iterator[tuple[PostgresServer, SetupCosts]]:
    """One server of each backend, measured once for the module's checks."""
    if request.param == "docker":
        request.getfixturevalue("docker_or_skip")
    settings = ServerSettings(backend=request.param, server_settings=TEST_SERVER_SETTINGS)
    with create_server(settings) as server:
        yield server, measure_setup_costs(server, n=N, seed=1)


def test_every_cost_is_positive_and_finite(measured: tuple[PostgresServer, SetupCosts]) -> None:
    _, costs = measured
    for name, value in costs.to_dict().items():
        assert math.isfinite(value) and value > 0, (name, value)


def test_each_cost_carries_n_and_an_interval_around_it(
    measured: tuple[PostgresServer, SetupCosts],
) -> None:
    _, costs = measured
    assert costs.n == N
    assert costs.n_blocks >= 2
    for name in MEASURED:
        est = costs.estimate(name)
        assert est.low <= est.value <= est.high, name
        assert est.n in (N, costs.n_blocks)


def test_costs_are_plausible_relative_to_each_other(
    measured: tuple[PostgresServer, SetupCosts],
) -> None:
    _, costs = measured
    # one connect's server CPU (its backend's exit included) fits in what the cores give
    # during one idle connect; so does the client's
    assert costs.server_cpu_per_connect_s < costs.connect_s * costs.cores
    assert costs.client_cpu_per_attempt_s < costs.connect_s * costs.cores
    assert costs.refused_s < costs.connect_s  # no fork, no auth
    assert 1 <= costs.cores <= (psutil.cpu_count() or 1)


def test_measuring_leaves_no_connection_behind(
    measured: tuple[PostgresServer, SetupCosts],
) -> None:
    server, _ = measured
    assert _client_backends(server) == 0
    assert _sockets_to(server) == 0


def test_the_costs_mapping_has_the_models_keys(
    measured: tuple[PostgresServer, SetupCosts],
) -> None:
    _, costs = measured
    assert set(costs.to_dict()) == {
        "cores",
        "server_cpu_per_connect_s",
        "postmaster_cpu_per_connect_s",
        "client_cpu_per_attempt_s",
        "connect_s",
        "refused_s",
    }
    ContentionSettings.from_costs(costs.to_dict(), n_clients=10)  # the model takes them


def test_the_postmasters_part_is_part_of_the_servers_cost(
    measured: tuple[PostgresServer, SetupCosts],
) -> None:
    _, costs = measured
    assert 0 <= costs.postmaster_cpu_per_connect_s < costs.server_cpu_per_connect_s


def test_too_few_connects_is_a_config_error_before_connecting(pg_server: PostgresServer) -> None:
    with pytest.raises(ConfigError, match="n must be"):
        measure_setup_costs(pg_server, n=3)


def test_a_server_that_does_not_answer_is_named(fresh_pg_server: PostgresServer) -> None:
    fresh_pg_server.take_down()
    try:
        with pytest.raises(ServerStartError, match="does not answer"):
            measure_setup_costs(fresh_pg_server, n=40)
    finally:
        fresh_pg_server.bring_up(wait=True)
