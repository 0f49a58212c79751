"""The big herd over client processes, on real servers: everyone reconnects, nothing is left.

Facts only (who connected, what is left, that CPU was measured), never
durations: the machine is shared and noisy.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import psycopg
import pytest

from perfkit.errors import ConfigError
from perfkit.postgres import FAST_SERVER_SETTINGS, PostgresServer, ServerSettings, create_server
from perfkit.retry.bigherd import (
    MAX_CONNECTIONS_MARGIN,
    BigHerdSettings,
    default_client_processes,
    drain,
    run_big_herd,
)
from perfkit.retry.contention import RetryBudget
from perfkit.retry.herdproc import (
    ClientProcesses,
    ProcessFailed,
    ShareJob,
    child_environment,
    ensure_fd_limit,
    fd_limit_error,
    peak_util,
    share_budget,
    split,
)
from perfkit.retry.strategies import FullJitter

N = 48
P = 3


def _server_settings(backend: str) -> ServerSettings:
    return ServerSettings(
        backend=backend,
        server_settings={**FAST_SERVER_SETTINGS, "max_connections": N + MAX_CONNECTIONS_MARGIN},
    )


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with create_server(_server_settings("local")) as server:
        yield server


@pytest.fixture(scope="module")
def spread_run(server: PostgresServer) -> dict[str, Any]:
    bs = BigHerdSettings(
        strategy="full_jitter", n_clients=N, outage_s=0.3, deadline=30.0, client_processes=P
    )
    return run_big_herd(server, bs, seed=5)


def _herd_children(parent: psutil.Process | None = None) -> list[psutil.Process]:
    """Client-loop processes under ``parent`` (default: this process), any depth. A child
    that exits while being read (a zombie, gone) is not one."""
    found = []
    for child in (parent or psutil.Process()).children(recursive=True):
        try:
            if "perfkit.retry.herdproc" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def _backends(dsn: str) -> int:
    """Client backends but ours now (-1 while the server does not answer)."""
    try:
        return drain(dsn, timeout=0)
    except psycopg.Error:
        return -1


def test_every_client_of_every_process_reconnects(spread_run: dict[str, Any]) -> None:
    s = spread_run["summary"]
    assert s["connected"] == N and s["gave_up"] == 0
    assert spread_run["clients"]["client"].tolist() == list(range(N))
    assert spread_run["clients"]["process"].value_counts().sort_index().tolist() == [16, 16, 16]


def test_each_client_process_is_a_process_of_its_own(spread_run: dict[str, Any]) -> None:
    pids = spread_run["processes"]["pid"]
    assert pids.nunique() == P and os.getpid() not in set(pids)


def test_client_times_from_processes_line_up_with_the_restart(spread_run: dict[str, Any]) -> None:
    clients = spread_run["clients"]
    assert (clients["noticed_t_event_s"] < 0).all()
    assert (clients["connected_t_event_s"] > 0).all()


def test_client_cpu_is_recorded_per_process(spread_run: dict[str, Any]) -> None:
    s, procs = spread_run["summary"], spread_run["processes"]
    assert s["client_processes"] == P
    assert (procs["cpu_s"] > 0).all() and (procs["wall_s"] > 0).all()
    assert s["client_cpu_s"] == pytest.approx(procs["cpu_s"].sum())
    assert s["client_cpu_util"] == pytest.approx(procs["cpu_util"].max())
    assert s["client_peak_cpu_util"] == pytest.approx(procs["peak_cpu_util"].max())
    assert s["client_peak_cpu_util"] >= s["client_cpu_util"] * 0.99 or procs["wall_s"].max() < 0.5
    assert s["client_saturated"] == (s["client_peak_cpu_util"] > 0.9)


def test_peak_util_is_the_busiest_stretch_of_the_window() -> None:
    # 1 s idle, then 0.5 s at a full core, then idle: whole phase 0.25, peak 1.0.
    samples = [(t / 10, 0.0) for t in range(11)]
    samples += [(1.0 + t / 10, t / 10) for t in range(1, 6)]
    samples += [(1.5 + t / 10, 0.5) for t in range(1, 6)]
    assert peak_util(samples) == pytest.approx(1.0)
    assert peak_util(samples[:1]) != peak_util(samples[:1])  # NaN for one sample
    assert peak_util([(0.0, 0.0), (0.2, 0.1)]) == pytest.approx(0.5)


def test_the_summary_has_the_p90_between_median_and_p95(spread_run: dict[str, Any]) -> None:
    s = spread_run["summary"]
    median, p90 = s["median_connected_after_ready_s"], s["p90_connected_after_ready_s"]
    assert median <= p90 <= s["p95_connected_after_ready_s"]


def test_no_process_and_no_connection_is_left(spread_run: dict[str, Any]) -> None:
    assert spread_run["summary"]["left_after"] == 0
    assert _herd_children() == []


def test_a_child_that_fails_is_reported_and_leaves_nothing(server: PostgresServer) -> None:
    good = ShareJob(
        dsn=server.dsn,
        strategy="naive",
        first=0,
        count=10,
        n_clients=20,
        seed=0,
        connect_timeout=2.0,
        deadline=10.0,
    )
    bad = dataclasses.replace(good, dsn=server.dsn_for("no_such_database"))
    with (
        pytest.raises(ProcessFailed, match="client process 1 failed"),
        ClientProcesses([good, bad]) as clients,
    ):
        clients.start(60.0)
    assert _herd_children() == []
    assert drain(server.dsn) == 0


def test_a_child_killed_during_the_herd_fails_the_run_and_leaves_nothing(
    server: PostgresServer,
) -> None:
    bs = BigHerdSettings(
        strategy="naive", n_clients=N, outage_s=1.0, deadline=30.0, client_processes=P
    )
    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            run_big_herd(server, bs, seed=1)
        except BaseException as exc:
            box["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    until = time.monotonic() + 60
    while len(_herd_children()) < P and time.monotonic() < until:
        time.sleep(0.02)
    while _backends(server.dsn) >= 0 and time.monotonic() < until:
        time.sleep(0.01)  # the server is up: wait for the outage (1 s), the herd's clients retrying
    _herd_children()[1].send_signal(signal.SIGKILL)
    runner.join(120)
    assert isinstance(box.get("error"), ProcessFailed)
    assert "client process" in str(box["error"])
    assert _herd_children() == []
    assert server.is_ready() and drain(server.dsn) == 0


def test_monotonic_time_is_one_clock_for_all_processes() -> None:
    before = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", "import time; print(repr(time.monotonic()))"],
        capture_output=True,
        text=True,
        check=True,
        env=child_environment(),
    ).stdout
    after = time.monotonic()
    assert before <= float(out) <= after


def test_clients_are_split_into_contiguous_near_equal_shares() -> None:
    assert split(10, 3) == [(0, 4), (4, 3), (7, 3)]
    assert sum(count for _, count in split(1000, 4)) == 1000


def test_default_processes_one_per_250_clients_at_most_two_per_cpu() -> None:
    assert default_client_processes(100, cpus=2) == 1
    assert default_client_processes(300, cpus=2) == 2
    assert default_client_processes(1000, cpus=2) == 4
    assert default_client_processes(10_000, cpus=2) == 4
    assert BigHerdSettings(strategy="naive", n_clients=1000).client_processes == (
        default_client_processes(1000)
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="a negative niceness needs root")
def test_client_loops_run_at_the_niceness_asked_for(server: PostgresServer) -> None:
    bs = BigHerdSettings(
        strategy="exponential",
        n_clients=20,
        outage_s=0.2,
        deadline=30.0,
        client_processes=2,
        client_nice=-5,
    )
    result = run_big_herd(server, bs, seed=0)
    assert result["summary"]["connected"] == 20 and result["summary"]["client_nice"] == -5
    assert result["processes"]["nice"].tolist() == [-5, -5]


def test_a_niceness_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="niceness"):
        BigHerdSettings(strategy="naive", n_clients=10, client_nice=40)


def test_more_processes_than_clients_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="client_processes"):
        BigHerdSettings(strategy="naive", n_clients=3, client_processes=4)


def test_fd_limit_message_gives_the_commands_that_raise_it() -> None:
    text = fd_limit_error(1000, 1, 512)
    assert "ulimit -Hn 1256 && ulimit -n 1256" in text
    assert "/etc/security/limits.conf" in text
    assert "client_processes=4" in text


def test_fd_limit_is_per_process_share() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert ensure_fd_limit(4 * 100, margin=0, processes=4)["needed"] == 100
    assert hard == resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def test_too_low_hard_fd_limit_is_reported_before_any_server_starts() -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    proc = subprocess.run(
        [sys.executable, "-m", "perfkit.retry.bigherd", "--clients", "1000", "--processes", "1"],
        capture_output=True,
        text=True,
        env=child_environment(),
        preexec_fn=low_limit,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "ulimit -Hn 1256 && ulimit -n 1256" in proc.stderr
    assert "calibration" not in proc.stdout  # no server was started, no herd ran


def test_a_herd_over_processes_on_the_docker_backend(docker_or_skip: None) -> None:
    bs = BigHerdSettings(
        strategy="exponential", n_clients=40, outage_s=0.3, deadline=30.0, client_processes=2
    )
    with create_server(_server_settings("docker")) as docker_server:
        result = run_big_herd(docker_server, bs, seed=2)
    s = result["summary"]
    assert s["connected"] == 40 and s["left_after"] == 0 and s["client_processes"] == 2
    assert _herd_children() == []


def test_ctrl_c_during_the_herd_leaves_no_client_process() -> None:
    argv = ["--clients", "40", "--processes", "2", "--strategies", "naive"]
    argv += ["--outage", "5", "--deadline", "30", "--calibration-burst", "10"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "perfkit.retry.bigherd", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=child_environment(),
    )
    try:
        until = time.monotonic() + 120
        children: list[psutil.Process] = []
        while len(children) < 2 and time.monotonic() < until and proc.poll() is None:
            time.sleep(0.05)
            children = _herd_children(psutil.Process(proc.pid))
        assert len(children) == 2
        time.sleep(1.5)  # connected, the server on its way down or down
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert proc.stderr is not None and b"KeyboardInterrupt" in proc.stderr.read()
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)


# -- a Strategy object and a shared retry budget ----------------------------------------------


def test_a_fleet_budget_is_split_evenly_over_the_client_loops() -> None:
    assert share_budget(100.0, 50.0, 4) == (25.0, 12.5)
    assert share_budget(2.0, 10.0, 4) == (1.0, 2.5)  # a loop's burst is at least one token


def test_client_processes_run_in_sessions_of_their_own(server: PostgresServer) -> None:
    jobs = BigHerdSettings(strategy="naive", n_clients=4, client_processes=2).jobs(server.dsn, 0)
    with ClientProcesses(jobs) as clients:
        clients.start(60)
        sessions = {os.getsid(pid) for pid in clients.pids}
        assert len(sessions) == 2 and os.getsid(0) not in sessions


def test_a_strategy_object_runs_under_its_label(server: PostgresServer) -> None:
    strategy = FullJitter(base=0.05, cap=0.5)
    bs = BigHerdSettings(strategy=strategy, name="mine", n_clients=12, outage_s=0.2,
                         deadline=20.0, client_processes=2)  # fmt: skip
    result = run_big_herd(server, bs, seed=3)
    assert result["summary"]["strategy"] == "mine" and result["summary"]["connected"] == 12
    assert set(result["attempts"]["strategy"]) == {"mine"}
    sleeps = result["attempts"]["sleep_planned_s"].dropna()
    assert (sleeps <= 0.5 + 1e-9).all()  # the object's cap, not full_jitter's default


def test_a_retry_budget_limits_the_herds_retries(server: PostgresServer) -> None:
    budget = RetryBudget(capacity=4.0, refill_per_s=20.0)
    bs = BigHerdSettings(strategy="naive", n_clients=20, outage_s=0.5, deadline=20.0,
                         client_processes=2, retry_budget=budget)  # fmt: skip
    result = run_big_herd(server, bs, seed=4)
    s = result["summary"]
    assert s["connected"] == 20 and s["retry_budget_refill_per_s"] == 20.0
    retries = result["attempts"].query("attempt > 1")["start"].sort_values().to_numpy()
    span = retries[-1] - retries[0]
    # two loops: 2 tokens at once each, 10/s each; naive alone would retry every few ms
    assert len(retries) <= 4 + 20.0 * span + 2
    assert len(retries) >= 20.0 * span * 0.5  # and the bucket refills
