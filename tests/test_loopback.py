"""The loopback guard refuses every libpq input that would connect off this machine.

Every refused address here is 0.0.0.0 or a name under ``.invalid``: if the guard
were broken nothing could leave the machine. The guard itself never connects;
these tests start no server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from perfkit.dsn import SecretDsn
from perfkit.errors import ConfigError
from perfkit.lifecycle.settings import IsolationSettings
from perfkit.loopback import check_environment, check_loopback, targets
from perfkit.postgres import ServerSettings

PASSWORD = "SECRETPW2"
#: A home without a ~/.pg_service.conf, so the machine's own files play no part.
CLEAN = {"HOME": "/nonexistent-perfkit-home"}

REFUSED_DSNS = {
    "key=value host": f"host=0.0.0.0 port=5432 user=u password={PASSWORD} dbname=x",
    "hostaddr beside a loopback host": (
        f"host=127.0.0.1 hostaddr=0.0.0.0 port=5432 user=u password={PASSWORD} dbname=x"
    ),
    "second of a host list": f"host=127.0.0.1,0.0.0.0 user=u password={PASSWORD}",
    "second of a hostaddr list": f"host=localhost hostaddr=127.0.0.1,0.0.0.0 password={PASSWORD}",
    "URL authority": f"postgresql://u:{PASSWORD}@0.0.0.0:5432/db",
    "URL host list": f"postgresql://u:{PASSWORD}@127.0.0.1:5432,0.0.0.0:5433/db",
    "URL ?host= over a loopback authority": (
        f"postgresql://u:{PASSWORD}@127.0.0.1:5432/db?host=db.invalid"
    ),
    "URL ?hostaddr=": f"postgresql://u:{PASSWORD}@localhost/db?hostaddr=0.0.0.0",
    "a host name other than localhost": f"postgresql://u:{PASSWORD}@db.invalid/db",
    "a name that merely contains localhost": f"host=localhost.invalid password={PASSWORD}",
    "IPv4-mapped IPv6 of a remote address": f"host=::ffff:0.0.0.0 password={PASSWORD}",
}

ACCEPTED_DSNS = {
    "127.0.0.1": "postgresql://u:pw@127.0.0.1:5432/db",
    "anywhere in 127/8": "host=127.0.0.2 port=5432",
    "::1 in a URL": "postgresql://u:pw@[::1]:5432/db",
    "localhost": "host=localhost",
    "unix socket directory": "postgresql://u@/db?host=/tmp/perfkit-pg-x&port=5432",
    "no host at all (libpq's default socket)": "dbname=x",
    "loopback host and hostaddr lists": "host=localhost,127.0.0.1 hostaddr=127.0.0.1,::1",
}

REFUSED_ENVIRONMENTS = {
    "PGHOST with a DSN that names no host": ({"PGHOST": "0.0.0.0"}, "dbname=x"),
    "PGHOST list": ({"PGHOST": "localhost,db.invalid"}, "dbname=x"),
    "PGHOSTADDR beside a loopback host": ({"PGHOSTADDR": "0.0.0.0"}, "host=127.0.0.1"),
    "PGSERVICE that is defined nowhere": ({"PGSERVICE": "nowhere"}, "dbname=x"),
}


@pytest.mark.parametrize("dsn", REFUSED_DSNS.values(), ids=REFUSED_DSNS.keys())
def test_guard_refuses_dsn_that_routes_off_loopback(dsn: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        check_loopback(dsn, CLEAN)


@pytest.mark.parametrize("dsn", ACCEPTED_DSNS.values(), ids=ACCEPTED_DSNS.keys())
def test_guard_accepts_loopback_and_socket_dsns(dsn: str) -> None:
    check_loopback(dsn, CLEAN)


@pytest.mark.parametrize(
    ("env", "dsn"), REFUSED_ENVIRONMENTS.values(), ids=REFUSED_ENVIRONMENTS.keys()
)
def test_guard_refuses_pg_environment_that_routes_off_loopback(
    env: dict[str, str], dsn: str
) -> None:
    with pytest.raises(ConfigError):
        check_loopback(dsn, {**CLEAN, **env})


def test_dsn_host_wins_over_pghost_as_in_libpq() -> None:
    check_loopback("host=127.0.0.1", {**CLEAN, "PGHOST": "db.invalid"})


def test_refusal_names_the_variable_that_chose_the_address() -> None:
    with pytest.raises(ConfigError, match="PGHOSTADDR"):
        check_loopback("host=localhost", {**CLEAN, "PGHOSTADDR": "0.0.0.0"})


def _service_file(tmp_path: Path, body: str) -> dict[str, str]:
    path = tmp_path / "pg_service.conf"
    path.write_text(body)
    return {**CLEAN, "PGSERVICEFILE": str(path)}


def test_guard_follows_a_service_in_the_dsn(tmp_path: Path) -> None:
    env = _service_file(tmp_path, "[far]\nhost=db.invalid\nport=5432\n")
    with pytest.raises(ConfigError, match="service 'far'"):
        check_loopback("service=far dbname=x", env)


def test_guard_follows_pgservice(tmp_path: Path) -> None:
    env = _service_file(tmp_path, "[far]\nhostaddr=0.0.0.0\n")
    with pytest.raises(ConfigError, match="hostaddr"):
        check_loopback("host=localhost", {**env, "PGSERVICE": "far"})


def test_guard_looks_in_pgsysconfdir_after_the_user_file(tmp_path: Path) -> None:
    (tmp_path / "pg_service.conf").write_text("[far]\nhost=db.invalid\n")
    with pytest.raises(ConfigError, match=r"db\.invalid"):
        check_loopback("service=far", {**CLEAN, "PGSYSCONFDIR": str(tmp_path)})


def test_dsn_values_win_over_the_service(tmp_path: Path) -> None:
    env = _service_file(tmp_path, "[near]\nhost=db.invalid\nport=5432\n")
    check_loopback("service=near host=127.0.0.1", env)


def test_a_local_service_is_accepted(tmp_path: Path) -> None:
    env = _service_file(tmp_path, "[near]\nhost=127.0.0.1\nport=5432\n")
    assert targets("service=near", env).host == "127.0.0.1"


def test_environment_check_refuses_pghostaddr_for_perfkits_own_servers() -> None:
    with pytest.raises(ConfigError, match="PGHOSTADDR"):
        check_environment({**CLEAN, "PGHOSTADDR": "0.0.0.0"})


def test_environment_check_ignores_pghost_which_our_dsns_override() -> None:
    check_environment({**CLEAN, "PGHOST": "db.invalid"})


def test_server_settings_refuse_before_anything_starts() -> None:
    with pytest.raises(ConfigError, match="hostaddr"):
        ServerSettings(backend="external", dsn=REFUSED_DSNS["hostaddr beside a loopback host"])


def test_plugin_settings_refuse_before_any_test() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        IsolationSettings(backend="external", dsn=REFUSED_DSNS["URL host list"])


@pytest.mark.parametrize("dsn", REFUSED_DSNS.values(), ids=REFUSED_DSNS.keys())
def test_refusal_message_never_holds_the_password(dsn: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_loopback(dsn, CLEAN)
    assert PASSWORD not in str(info.value)


def test_secret_dsn_repr_masks_the_password_but_the_value_is_intact() -> None:
    dsn = SecretDsn(f"postgresql://u:{PASSWORD}@127.0.0.1/db")
    assert PASSWORD not in repr(dsn) and PASSWORD not in repr({"dsn": dsn})
    assert f"{dsn}" == f"postgresql://u:{PASSWORD}@127.0.0.1/db"


def test_settings_keep_their_dsn_as_a_secret() -> None:
    settings = ServerSettings(backend="external", dsn=f"postgresql://u:{PASSWORD}@[::1]/db")
    assert isinstance(settings.dsn, SecretDsn)
    assert PASSWORD not in repr(settings.dsn)


REFUSED_CALLS = """
import pytest
from perfkit.loopback import check_loopback
from perfkit.postgres import ServerSettings, create_server

DSNS = {dsns!r}

@pytest.mark.parametrize("i", range(len(DSNS)))
def test_guard(i):
    check_loopback(DSNS[i])

@pytest.mark.parametrize("i", range(len(DSNS)))
def test_settings(i):
    create_server(ServerSettings(backend="external", dsn=DSNS[i]))
"""


@pytest.mark.parametrize(
    ("selected", "style"),
    [("test_guard", ("--tb=long", "--showlocals")), ("test_settings", ("--tb=auto",))],
    ids=["every guard frame, long, with locals", "through the settings, pytest's default"],
)
def test_tracebacks_of_refused_dsns_never_show_the_password(
    pytester: pytest.Pytester, selected: str, style: tuple[str, ...]
) -> None:
    """pytest lists the arguments of the frames it prints in long style and, with -l, locals.

    (A caller's own frames, a dataclass ``__init__`` among them, hold what the
    caller passed, which perfkit cannot mask: ``--showlocals`` shows those.)
    """
    pytester.makepyfile(test_refused=REFUSED_CALLS.format(dsns=list(REFUSED_DSNS.values())))
    result = pytester.runpytest_subprocess(*style, "-p", "no:cacheprovider", "-k", selected)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert output.count("ConfigError") >= len(REFUSED_DSNS)  # the guard refused each ...
    assert PASSWORD not in output  # ... and no frame showed the secret


@pytest.mark.parametrize(
    "dsn",
    [REFUSED_DSNS["URL authority"], REFUSED_DSNS["URL host list"], REFUSED_DSNS["URL ?hostaddr="]],
)
def test_plugin_refuses_an_external_dsn_as_a_usage_error_without_the_password(
    pytester: pytest.Pytester, dsn: str
) -> None:
    pytester.makepyfile(test_inner="def test_db(perfkit_dsn):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--perfkit-backend=external", f"--perfkit-dsn={dsn}", "--tb=long", "--showlocals"
    )
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "loopback" in output and PASSWORD not in output


def test_perfkit_dsn_variable_is_refused_the_same_way(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="def test_db(perfkit_dsn):\n    pass\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERFKIT_DSN", REFUSED_DSNS["hostaddr beside a loopback host"])
        result = pytester.runpytest_subprocess("--tb=long", "--showlocals")
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "hostaddr" in output and PASSWORD not in output


def test_a_server_refuses_to_start_under_an_off_loopback_pghostaddr(tmp_path: Path) -> None:
    """A PGHOSTADDR would redirect the DSN of a server perfkit starts: refused first."""
    code = (
        "from perfkit.postgres import ServerSettings, create_server\n"
        "create_server(ServerSettings(backend='local')).start()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**CLEAN, "PATH": "/usr/bin:/bin", "PGHOSTADDR": "0.0.0.0"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "PGHOSTADDR" in proc.stderr and "ConfigError" in proc.stderr


def test_pgport_is_part_of_where_libpq_connects() -> None:
    found = targets("host=127.0.0.1", {**CLEAN, "PGPORT": "6543"})
    assert found.describe() == "127.0.0.1:6543" and found.sources["port"] == "PGPORT"


def test_messages_name_the_address_the_environment_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, a DSN without host under PGHOST=... was reported as localhost:5432."""
    monkeypatch.setenv("PGHOST", "/tmp/perfkit-socket-dir")
    monkeypatch.setenv("PGPORT", "6543")
    assert targets("dbname=x").describe() == "/tmp/perfkit-socket-dir:6543"
