"""pgbench-format scripts (perfkit.workload): parsing, expressions, distributions, errors.

No server: what a script means, checked command by command and function by function.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from distcheck import chisquare_pvalue, truncated_normal_sd

from perfkit.errors import ConfigError
from perfkit.pool import Workload
from perfkit.workload import (
    ClientState,
    ScriptError,
    load_workload,
    parse_script,
    randoms,
    run_script,
)
from perfkit.workload.expr import EvalError, ExprSyntaxError, evaluate, parse
from perfkit.workload.files import BUILTIN_SCRIPTS, created_objects, read_sql_file, split_ref
from perfkit.workload.script import SetCommand, SleepCommand, SqlCommand


def value(text: str, **env: int | float) -> int | float | bool:
    return evaluate(parse(text), env, random.Random(0))


def parsed(text: str) -> tuple:
    return parse_script(text, name="t", where="t.sql").commands


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- expressions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3),
        ("-7 / 2", -3),  # C truncation toward zero, not floor
        ("7 % 3", 1),
        ("-7 % 3", -1),  # the sign of the dividend, as in C
        ("7 % -1", 0),
        ("7.0 / 2", 3.5),
        ("1 + 0.5", 1.5),
        ("10 - 2 - 3", 5),  # left associative
        ("- 3 + 5", 2),
        ("-9223372036854775808", -(2**63)),
        ("abs(-4)", 4),
        ("abs(-4.5)", 4.5),
        ("least(3, 1, 2)", 1),
        ("greatest(3, 1, 2)", 3),
        ("least(3, 1.5)", 1.5),  # a double makes the result double
        ("int(3.99)", 3),
        ("int(-3.99)", -3),
        ("double(3)", 3.0),
        ("mod(-7, 3)", -1),
        ("sqrt(16)", 4.0),
        ("pow(2, 10)", 1024.0),
        ("exp(0)", 1.0),
        ("ln(1)", 0.0),
        ("1 < 2 and 2 <= 2", True),
        ("1 = 2 or not false", True),
        ("3 <> 3", False),
        ("ABS(-1)", 1),  # function names are case-insensitive
    ],
)
def test_expression_evaluates_like_pgbench(text: str, expected: int | float | bool) -> None:
    result = value(text)
    assert result == expected
    assert type(result) is type(expected)


def test_pi_is_pi() -> None:
    assert value("pi()") == math.pi


def test_variables_are_read_with_a_colon() -> None:
    assert value(":a * 100000 + :b", a=2, b=7) == 200007


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 / 0", "division by zero"),
        ("1 % 0", "division by zero"),
        ("1.0 / 0", "division by zero"),
        ("9223372036854775807 + 1", "bigint out of range"),
        ("random(5, 1)", "empty range"),
        ("random_exponential(1, 10, 0)", "greater than zero"),
        ("random_gaussian(1, 10, 1.5)", "at least 2"),
        ("random_zipfian(1, 10, 1.0)", "zipfian parameter"),
        ("int(1e300)", "overflow"),
        (":missing + 1", "undefined variable"),
    ],
)
def test_evaluation_errors_say_what_went_wrong(text: str, message: str) -> None:
    with pytest.raises(EvalError, match=message):
        value(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 +", "end of expression"),
        ("(1 + 2", "expected"),
        ("1 2", "unexpected"),
        ("nosuch(1)", "unknown function"),
        ("random(1)", "takes 2"),
        ("abs(1, 2)", "takes 1"),
        ("1 & 2", "not supported"),
        ("aid", "variables are :name"),
        ("1 $ 2", "unexpected character"),
        ("99999999999999999999", "out of range"),
        ("", "empty"),
    ],
)
def test_syntax_errors_are_caught_when_parsed(text: str, message: str) -> None:
    with pytest.raises(ExprSyntaxError, match=message):
        parse(text)


# -- distributions -------------------------------------------------------------------


def draws(expression: str, n: int = 20_000, seed: int = 1) -> np.ndarray:
    node, rng = parse(expression), random.Random(seed)
    return np.array([evaluate(node, {}, rng) for _ in range(n)])


def test_random_is_uniform_over_both_bounds() -> None:
    x = draws("random(1, 10)")
    assert x.min() == 1 and x.max() == 10
    counts = np.bincount(x)[1:]
    assert chisquare_pvalue(counts) > 0.001


def test_random_exponential_follows_pgbench_truncated_exponential() -> None:
    lb, ub, p = 1, 100, 5.0
    x = draws(f"random_exponential({lb}, {ub}, {p})")
    # pgbench: P(value < lb + k) = (1 - exp(-p k / n)) / (1 - exp(-p)), n = ub - lb + 1
    n = ub - lb + 1

    def cdf(v: np.ndarray) -> np.ndarray:
        k = np.floor(v) - lb + 1
        return np.clip((1 - np.exp(-p * k / n)) / (1 - math.exp(-p)), 0, 1)

    observed = np.bincount(x - lb, minlength=n)
    expected = np.diff(np.concatenate([[0.0], cdf(np.arange(lb, ub + 1))])) * len(x)
    assert x.min() >= lb and x.max() <= ub
    assert chisquare_pvalue(observed, expected) > 0.001


def test_random_gaussian_is_centred_and_truncated_at_the_parameter() -> None:
    x = draws("random_gaussian(1, 1000, 2.5)")
    assert x.min() >= 1 and x.max() <= 1000
    assert abs(np.mean(x) - 500.5) < 5
    # a standard normal truncated at +-2.5, scaled to 1000 / 5 per sd
    sd = truncated_normal_sd(2.5) * 1000 / 5.0
    assert abs(np.std(x) - sd) < 0.03 * sd


def test_random_zipfian_follows_zipf_law() -> None:
    x = draws("random_zipfian(1, 50, 1.5)")
    ranks = np.arange(1, 51)
    expected = ranks**-1.5 / np.sum(ranks**-1.5) * len(x)
    observed = np.bincount(x, minlength=51)[1:]
    assert chisquare_pvalue(observed, expected) > 0.001


def test_the_same_seed_draws_the_same_values() -> None:
    a = draws("random_zipfian(1, 1000, 1.2) + random(1, 10)", n=100, seed=5)
    b = draws("random_zipfian(1, 1000, 1.2) + random(1, 10)", n=100, seed=5)
    assert (a == b).all()


def test_client_states_draw_per_worker_and_reproducibly() -> None:
    node = parse("random(1, 1000000)")
    a0 = [evaluate(node, {}, ClientState(seed=1, client_id=0).rng) for _ in range(3)]
    a1 = [evaluate(node, {}, ClientState(seed=1, client_id=1).rng) for _ in range(3)]
    assert a0 != a1
    s = ClientState(seed=1, client_id=0)
    again = [evaluate(node, {}, s.rng) for _ in range(3)]
    assert again[0] == a0[0]


def test_gaussian_parameter_limits_are_pgbench_s() -> None:
    assert randoms.MIN_GAUSSIAN_PARAM == 2.0
    assert (randoms.MIN_ZIPFIAN_PARAM, randoms.MAX_ZIPFIAN_PARAM) == (1.001, 1000.0)


# -- scripts -------------------------------------------------------------------------


def test_sql_commands_span_lines_until_a_semicolon() -> None:
    commands = parsed("SELECT 1\n  + 2;\n\nSELECT 'a;b' -- c;\n;\nSELECT 3")
    assert [c.text for c in commands] == ["SELECT 1\n  + 2", "SELECT 'a;b' -- c;", "SELECT 3"]
    assert [c.line for c in commands] == [1, 4, 6]


def test_semicolons_in_quotes_comments_and_dollar_quotes_do_not_end_a_command() -> None:
    commands = parsed('SELECT $$x;y$$, "a;b" /* ; */;\nSELECT 2;')
    assert len(commands) == 2


def test_set_parses_its_expression() -> None:
    (cmd,) = parsed("\\set aid random(1, 100000 * :scale)\n")
    assert isinstance(cmd, SetCommand)
    assert cmd.var == "aid" and cmd.line == 1


def test_a_trailing_backslash_continues_a_meta_command() -> None:
    (cmd,) = parsed("\\set x 1 + \\\n  2\n")
    assert isinstance(cmd, SetCommand)
    assert evaluate(cmd.expression, {}, random.Random(0)) == 3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("\\sleep 3", 3.0), ("\\sleep 20 ms", 0.02), ("\\sleep 500 us", 0.0005), ("\\sleep 2 s", 2.0)],
)
def test_sleep_takes_a_unit(text: str, seconds: float) -> None:
    (cmd,) = parsed(text)
    assert isinstance(cmd, SleepCommand)
    assert cmd.amount * cmd.unit_s == pytest.approx(seconds)


def test_sleep_takes_a_variable() -> None:
    (cmd,) = parsed("\\sleep :pause ms")
    assert isinstance(cmd, SleepCommand)
    assert cmd.amount == "pause"


def test_variables_in_sql_become_bound_parameters_not_text() -> None:
    (cmd,) = parsed("UPDATE t SET x = x + :delta WHERE id = :id AND y::int > 0 AND z LIKE 'a%'")
    assert isinstance(cmd, SqlCommand)
    assert cmd.query == "UPDATE t SET x = x + %s WHERE id = %s AND y::int > 0 AND z LIKE 'a%%'"
    assert cmd.params == ("delta", "id")


def test_escaped_quotes_in_e_strings_do_not_end_the_string() -> None:
    commands = parsed("SELECT E'it\\'s; \\\\ :x';\nSELECT 2;")
    assert [c.text for c in commands] == ["SELECT E'it\\'s; \\\\ :x'", "SELECT 2"]


def test_colons_inside_quotes_are_not_variables() -> None:
    (cmd,) = parsed("SELECT '12:30:00'::time")
    assert isinstance(cmd, SqlCommand)
    assert cmd.params == () and cmd.query == "SELECT '12:30:00'::time"


def test_builtin_scripts_match_pgbench_s_own() -> None:
    scripts = load_workload(list(BUILTIN_SCRIPTS.values()))
    tpcb = scripts[0].script
    assert tpcb.sets() == {"aid", "bid", "tid", "delta"}
    assert sum(isinstance(c, SqlCommand) for c in tpcb.commands) == 7
    assert tpcb.writes and not scripts[2].script.writes


def test_weights_follow_the_at_sign() -> None:
    assert split_ref("a.sql@7") == ("a.sql", 7)
    assert split_ref("dir@x/a.sql") == ("dir@x/a.sql", 1)
    assert split_ref("a.sql") == ("a.sql", 1)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("SELECT 1;\n\\shell echo hi\n", 2, "perfkit does not run"),
        ("SELECT 1;\n\n\\bogus 1\n", 3, "unknown meta-command \\\\bogus"),
        ("\\set x 1 +\n", 1, "end of expression"),
        ("\\set x\n", 1, "needs a variable name"),
        ("\\set 1x 2\n", 1, "invalid variable name"),
        ("\\sleep 1 hours\n", 1, "unknown time unit"),
        ("\\sleep soon\n", 1, "neither an integer"),
        ("SELECT 1\n\\set x 1\n", 2, "inside a SQL command"),
        ("SELECT 1 AS a \\gset\n", 1, "meta-command \\\\gset inside a SQL command"),
        ("-- only a comment\n", 1, "no command"),
        ("SELECT :nothere;\n", 1, "never set"),
    ],
)
def test_script_errors_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, "bad.sql", text)
    with pytest.raises(ScriptError, match=rf"^{path}:{line}: .*{message}"):
        load_workload([path])


def test_a_missing_file_lists_the_shipped_scripts() -> None:
    with pytest.raises(ScriptError, match=r"no such file.*perfkit:default/select1\.sql"):
        load_workload(["nowhere.sql@2"])


@pytest.mark.parametrize("ref", ["a.sql@x", "a.sql@-1", "a.sql@"])
def test_a_bad_weight_is_an_error(tmp_path: Path, ref: str) -> None:
    with pytest.raises(ScriptError, match="weight"):
        load_workload([str(tmp_path / ref)])


def test_variables_may_be_set_in_another_script_of_the_workload(tmp_path: Path) -> None:
    setter = write(tmp_path, "setter.sql", "\\set n random(1, 10)\nSELECT :n;\n")
    reader = write(tmp_path, "reader.sql", "SELECT :n + :scale + :client_id;\n")
    assert [w.weight for w in load_workload([f"{setter}@2", reader])] == [2, 1]


def test_schema_files_list_what_they_create() -> None:
    _, statements = read_sql_file("perfkit:scheduled_tasks/schema.sql")
    assert created_objects(statements) == [
        "table scheduled_tasks",
        "index scheduled_tasks_due",
        "index scheduled_tasks_name",
    ]


# -- running -------------------------------------------------------------------------


class RecordingConnection:
    """Records what a script sends (a stand-in for a connection: no database involved)."""

    description = None

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple | None]] = []

    def execute(self, query: str, params: tuple | None = None) -> RecordingConnection:
        self.sent.append((query, params))
        return self


def test_running_a_script_sets_variables_sleeps_and_binds_them(tmp_path: Path) -> None:
    path = write(
        tmp_path, "s.sql", "\\set a 6 * 7\n\\set pause :a / 2\n\\sleep :pause ms\nSELECT :a, :a;\n"
    )
    (w,) = load_workload([path])
    conn, slept = RecordingConnection(), []
    run_script(conn, w.script, ClientState(seed=0, client_id=3), slept.append)
    assert conn.sent == [("SELECT %s, %s", (42, 42))]
    assert slept == [pytest.approx(0.021)]


def test_a_workload_s_outside_variables_are_name_number_pairs() -> None:
    assert Workload(variables=(("scale", 3),)).variables == (("scale", 3),)
    with pytest.raises(ConfigError, match="variables"):
        Workload(variables=(("scale", "3"),))
