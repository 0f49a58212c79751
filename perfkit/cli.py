"""The ``perfkit`` command: run labs, build the report, compare runs, sweep grids.

Exit codes: 0 success, 1 a metric changed (``compare``/``ab`` with
``--fail-on-change``) or no usable backend (``doctor``), 2 a perfkit error
(bad parameter, unknown lab, failed notebook, unusable backend; the message
goes to stderr), 130 interrupted (SIGINT),
143 terminated (SIGTERM), 129 hung up (SIGHUP). On each of the three signals
every server is removed first, also those of a running notebook's kernel.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perfkit.dsn import mask
from perfkit.errors import ConfigError, PerfkitError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_HUNG_UP = 129  # 128 + SIGHUP


def _load_yaml(path: str) -> Any:
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        where = f" at line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        problem = ", ".join(p for p in (exc.context, exc.problem) if p) or "unreadable"
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:  # e.g. a control character: the first line says which
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except (ValueError, TypeError, AttributeError) as exc:  # PyYAML on e.g. !!int "abc"
        raise ConfigError(f"{path} is not valid YAML: a tagged value is wrong ({exc})") from None


def _load_params_file(path: str) -> dict[str, Any]:
    data = _load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ConfigError(f"{path} must map parameter names to values")
    return data


# -- handlers -----------------------------------------------------------------


def _sweep_dead_owners() -> None:
    """Remove servers and containers of perfkit runs that were killed (never a live run's)."""
    from perfkit.postgres import leaks

    for item in leaks.sweep_dead_owners():
        print(f"removed {item} (left by a run that is gone)", flush=True)


def _values(
    notebook: str | Path, files: list[str] | None, pairs: list[list[str]] | None
) -> dict[str, Any]:
    """Parameters from ``-f`` files then ``-p`` pairs (later ones win), typed by the notebook."""
    from perfkit import notebooks

    values: dict[str, Any] = {}
    for path in files or []:
        values.update(_load_params_file(path))
    values.update(notebooks.parse_cli_parameters(notebook, pairs or []))
    return values


def resolve_notebook(value: str) -> Path:
    """The notebook ``perfkit run`` / ``ab`` / ``sweep`` execute: a lab's name or a path.

    A lab's name (``retry``, ``pool``, ... the names ``report --labs`` takes)
    means the notebook shipped with perfkit; anything else is a notebook
    file. ConfigError names the labs when it is neither.
    """
    from perfkit import registry, report

    lab = registry.find(value)
    if lab is not None:
        return report.default_notebooks_dir() / lab.notebook
    path = Path(value)
    if path.is_file():
        return path
    labs = ", ".join(lab.name for lab in registry.LABS)
    if path.suffix == ".ipynb" or len(path.parts) > 1:
        raise ConfigError(f"notebook {value} not found; give a notebook file or a lab: {labs}")
    raise ConfigError(f"unknown lab {value!r}; the labs are: {labs} (or give a notebook file)")


def _check_runs(runs: int, what: str = "runs") -> int:
    if runs < 1:
        raise ConfigError(f"--{what} must be at least 1, got {runs}")
    return runs


def cmd_run(args: argparse.Namespace) -> int:
    from perfkit import notebooks, registry

    by_name = registry.find(args.notebook) is not None
    args.notebook = resolve_notebook(args.notebook)
    _sweep_dead_owners()
    values = _values(args.notebook, args.file, args.parameter)
    if by_name:  # results go to ./data as with `report`, never into the installed package
        values.setdefault("out_dir", str(Path(args.data_dir).resolve()))
    if _check_runs(args.runs) > 1:
        return _run_repeated(args, values)
    run = notebooks.execute(
        args.notebook,
        values,
        output_dir=args.output_dir,
        cwd=args.cwd,
        show_code=args.show_code,
    )
    print(f"executed {run.executed}")
    if run.html:
        print(f"html     {run.html}")
    print(f"time     {run.wall_s:.1f} s ({run.overhead_s:.1f} s kernel/papermill overhead)")
    return 0


def _run_repeated(args: argparse.Namespace, values: dict[str, Any]) -> int:
    """``perfkit run --runs K``: K runs of a lab notebook, then how to compare or calibrate."""
    from perfkit import abtest, notebooks

    lab = abtest.lab_of(args.notebook)
    notebooks.validate_parameters(args.notebook, values)  # before the first kernel
    side = abtest.Side(name="run", parameters=values)
    made = []
    for i in range(1, args.runs + 1):
        print(f"== run {i} of {args.runs}: {lab.name}", flush=True)
        made.append(
            abtest.run_once(args.notebook, side, data_dir=args.data_dir, output_dir=args.output_dir)
        )
    paths = " ".join(str(r.path) for r in made)
    print(f"{len(made)} runs of {lab.name}:")
    print(f"  perfkit compare {paths} --vs <other runs>")
    print(f"  perfkit calibrate {paths}   # this machine's noise floor per metric")
    return 0


def cmd_ab(args: argparse.Namespace) -> int:
    """``perfkit ab``: A and B alternately in one session, compared pair by pair."""
    from perfkit import abtest, compare, notebooks

    _check_runs(args.pairs, "pairs")
    args.notebook = resolve_notebook(args.notebook)
    _sweep_dead_owners()
    shared = _values(args.notebook, args.file, args.parameter)
    sides = []
    for name, pairs, files, python in (
        ("A", args.a, args.a_file, args.a_python),
        ("B", args.b, args.b_file, args.b_python),
    ):
        values = {**shared, **_values(args.notebook, files, pairs)}
        notebooks.validate_parameters(args.notebook, values)  # before any kernel
        exe = abtest.check_python(python) if python else sys.executable
        sides.append(abtest.Side(name=name, parameters=values, python=exe))
    if sides[0].parameters == sides[1].parameters and sides[0].python == sides[1].python:
        raise ConfigError(
            "A and B are the same; give B (or A) other parameters (--b NAME VALUE, --b-file) "
            "or another checkout's Python (--b-python PATH)"
        )
    runs_a, runs_b = abtest.run_pairs(
        args.notebook,
        (sides[0], sides[1]),
        pairs=args.pairs,
        data_dir=args.data_dir,
        output_dir=args.output_dir,
        log=lambda line: print(line, flush=True),
    )
    table = compare.compare_paths(
        [r.path for r in runs_a],
        [r.path for r in runs_b],
        threshold=args.threshold,
        paired=True,
        allow_different=True,
    )
    code = _print_verdicts(table, args)
    print("compare these pairs again with:")
    print(
        f"  perfkit compare --paired {' '.join(str(r.path) for r in runs_a)} "
        f"--vs {' '.join(str(r.path) for r in runs_b)}"
    )
    return code


def cmd_calibrate(args: argparse.Namespace) -> int:
    from perfkit import calibrate

    run = calibrate.calibrate(args.runs, out_dir=args.data_dir)
    print(calibrate.format_floors(run))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from perfkit import registry, report, results, summary

    _sweep_dead_owners()
    names = args.labs or [lab.name for lab in registry.LABS]
    orders = report.interleaved_orders(names, args.runs)
    saved: list[str] = []
    ok = True
    for i, order in enumerate(orders, start=1):
        if len(orders) > 1:
            print(f"== report {i} of {len(orders)}: {' '.join(order)}", flush=True)
        outcome = report.build(
            quick=args.quick,
            backend=args.backend,
            output_dir=args.output_dir,
            data_dir=args.data_dir,
            notebooks_dir=args.notebooks_dir,
            labs=order,
            show_code=args.show_code,
            log=lambda line: print(line, flush=True),
        )
        for line in outcome.summary_lines():
            print(line)
        ok = ok and outcome.ok
        if len(orders) > 1 and results.run_dirs(summary.REPORT_EXPERIMENT, args.data_dir):
            saved.append(str(results.latest(summary.REPORT_EXPERIMENT, args.data_dir).path))
    if len(saved) > 1:
        print(f"{len(saved)} report runs; compare them with another set of runs:")
        print(f"  perfkit compare {' '.join(saved)} --vs <other runs>")
        print(f"  perfkit calibrate {' '.join(saved)}   # this machine's noise floor per metric")
    return 0 if ok else EXIT_ERROR


def _print_verdicts(table: Any, args: argparse.Namespace) -> int:
    """Print compare's table; the exit code (1: a metric changed, with --fail-on-change)."""
    from perfkit import compare

    print(compare.format_table(table, threshold=args.threshold))
    return 1 if args.fail_on_change and bool(table["flag"].ne("").any()) else 0


def _calibration(args: argparse.Namespace, first_a: str) -> Any:
    """The calibration compare applies: --calibration RUN, none, or the latest like side A."""
    from perfkit import calibrate, compare, results

    if args.calibration == "none":
        return None
    if args.calibration != "auto":
        return results.load(args.calibration)
    return calibrate.matching(compare.resolve_run(first_a), args.data_dir)


def cmd_compare(args: argparse.Namespace) -> int:
    from perfkit import calibrate, compare

    if args.vs is None:
        if len(args.runs) != 2:
            raise ConfigError(
                f"give two runs (A B), or A's runs then --vs and B's runs; got {len(args.runs)}"
            )
        side_a, side_b = args.runs[:1], args.runs[1:]
    else:
        side_a, side_b = args.runs, args.vs
    calibration = _calibration(args, side_a[0])
    table = compare.compare_paths(
        side_a,
        side_b,
        threshold=args.threshold,
        allow_different=args.allow_different,
        paired=args.paired,
        floors=None if calibration is None else calibrate.floors_of(calibration),
    )
    if calibration is not None:
        table.attrs["calibration"] = calibration.run_id
    return _print_verdicts(table, args)


def cmd_sweep(args: argparse.Namespace) -> int:
    from perfkit import sweep

    notebook = resolve_notebook(args.notebook)
    grid = sweep.load_grid(args.grid)
    outcome = sweep.run_sweep(
        notebook,
        grid,
        output_dir=args.output_dir,
        scheduler=args.scheduler,
        fixed=_load_params_file(args.file) if args.file else None,
        log=lambda line: print(line, flush=True),
    )
    print(f"{len(outcome.points)} points, merged results: {outcome.merged_path}")
    for experiment, frame in outcome.frames.items():
        print(f"  {experiment}: {len(frame)} rows, columns {', '.join(map(str, frame.columns))}")
    return 0 if outcome.ok else EXIT_ERROR


def _csv_list(option: str, text: str, kind: type = str) -> list[Any]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [kind(t.replace("_", "")) if kind is int else kind(t) for t in items]
    except ValueError:
        raise ConfigError(f"{option} must be a comma-separated list of {kind.__name__}s") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulated herds for strategies x fleet sizes x seeds, here or on a dask scheduler."""
    import time

    from perfkit.retry import SimSettings, simulate_grid

    scenario = {"outage_s": args.outage_s, "connect_timeout": args.connect_timeout}
    if args.costs:
        from perfkit.retry.contention import ContentionSettings

        costs = _load_params_file(args.costs)

        def settings_for(n: int) -> SimSettings:
            return ContentionSettings.from_costs(costs, n_clients=n, **scenario)
    else:

        def settings_for(n: int) -> SimSettings:
            return SimSettings(n_clients=n, **scenario)

    started = time.perf_counter()
    frame = simulate_grid(
        _csv_list("--strategies", args.strategies),
        _csv_list("--sizes", args.sizes, int),
        args.seeds,
        settings_for,
        client=args.scheduler,
    )
    wall = time.perf_counter() - started
    columns = [
        "strategy", "n_clients", "seed", "connected", "attempts", "timeouts",
        "median_connected_after_ready_s", "all_connected_after_ready_s", "cell_wall_s",
    ]  # fmt: skip
    print(frame[columns].to_string(index=False))
    model = f"contention, costs from {args.costs}" if args.costs else "first come, first served"
    print(f"{len(frame)} cells in {wall:.1f} s ({args.scheduler or 'here'}; model: {model})")
    if args.output:
        frame.to_csv(args.output, index=False)
        print(f"rows written to {args.output}")
    return 0


def cmd_servers(args: argparse.Namespace) -> int:
    """List or stop reused servers: this user's, of the current namespace unless ``--all``."""
    from perfkit.postgres import reuse

    current = reuse.current_namespace()
    namespace = None if args.all else current
    scope = "every namespace" if args.all else f"namespace {current or '(default)'!r}"
    if args.stop:
        if args.all and not _confirmed(args, f"remove the reused servers of {scope}"):
            print("nothing removed")
            return EXIT_ERROR
        removed = reuse.stop_reused(keys=args.keys or None, namespace=namespace)
        for item in removed:
            print(f"removed {item}")
        print(f"{len(removed)} reused server(s) of {scope} removed")
        return 0
    servers = reuse.list_reused(namespace=namespace)
    if not servers:
        print(f"no reused servers in {scope} (the pytest plugin keeps one with --perfkit-reuse)")
    for info in servers:
        where = f"  [{info.namespace or '(default)'}]" if args.all else ""
        print(f"{info.backend:7} {info.key}  {info.status:8} {info.where}{where}")
    if not args.all:
        others = len(reuse.list_reused()) - len(servers)
        if others:
            print(
                f"{others} more in other namespaces ({reuse.NAMESPACE_ENV}): perfkit servers --all"
            )
    return 0


def _confirmed(args: argparse.Namespace, what: str) -> bool:
    """``--yes``, or a yes typed on a terminal; without a terminal ``--all --stop`` proceeds."""
    if args.yes or not sys.stdin.isatty():
        return True
    answer = input(f"{what}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        from perfkit import doctor
    except ImportError as exc:
        raise PerfkitError(f"perfkit doctor is not available in this install ({exc})") from exc
    return int(doctor.main(list(args.rest)))


def cmd_image(args: argparse.Namespace) -> int:
    try:
        from perfkit.postgres import image
    except ImportError as exc:
        raise PerfkitError(f"perfkit image build is not available in this install ({exc})") from exc
    return int(image.cli(list(args.rest)))


# -- parser -------------------------------------------------------------------

#: The registered labs' names, for help texts (kept equal to perfkit.registry.LABS by a test;
#: importing the registry here would import every lab on each ``perfkit`` start).
LAB_NAMES = ("retry", "pool", "lifecycle", "streaming", "pgbouncer")
NOTEBOOK_HELP = (
    f"a lab's name ({', '.join(LAB_NAMES)}: its shipped notebook) or the path of a .ipynb file"
)


def version() -> str:
    """perfkit's installed version (the package's own ``__version__`` when not installed)."""
    from importlib import metadata

    try:
        return metadata.version("perfkit")
    except metadata.PackageNotFoundError:
        import perfkit

        return perfkit.__version__


class _VersionAction(argparse.Action):
    """``--version``: looks the version up only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print perfkit's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"perfkit {version()}")
        parser.exit()


def _add_verdict_options(parser: argparse.ArgumentParser) -> None:
    """What compare and ab share: the threshold and --fail-on-change."""
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.1,
        help="flag a metric when B/A's whole 95 %% interval lies beyond 1 ± this (or beyond "
        "its calibrated noise floor when larger)",
    )
    parser.add_argument(
        "--fail-on-change", action="store_true", help="exit 1 when any metric is flagged"
    )


def _add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="execute one lab (or any notebook) with papermill")
    run.add_argument("notebook", metavar="LAB|NOTEBOOK", help=NOTEBOOK_HELP)
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="set a parameter (typed like the notebook's default); repeatable",
    )
    run.add_argument(
        "-f", "--file", action="append", metavar="PARAMS_YAML", help="parameters from YAML"
    )
    run.add_argument("--output-dir", default="runs", help="where run directories go (runs/)")
    run.add_argument("--cwd", default=None, help="kernel working directory (notebook's folder)")
    run.add_argument("--show-code", action="store_true", help="keep code cells in the HTML")
    run.add_argument(
        "--runs",
        type=int,
        default=1,
        metavar="K",
        help="run a lab notebook K times (each run one replicate for compare / calibrate)",
    )
    run.add_argument(
        "--data-dir",
        default="data",
        help="where a lab named by LAB or run with --runs saves its results (data/)",
    )
    run.set_defaults(handler=cmd_run)


def _add_ab(sub: Any) -> None:
    ab = sub.add_parser(
        "ab", help="run a lab as A and as B alternately, then compare them pair by pair"
    )
    ab.add_argument("notebook", metavar="LAB|NOTEBOOK", help="a lab: its name or notebook file")
    ab.add_argument("--pairs", type=int, default=6, metavar="K", help="pairs to run (6+ for 95 %%)")
    for flag, help_ in (
        ("-p", "a parameter for both sides"),
        ("--a", "a parameter for side A only"),
        ("--b", "a parameter for side B only"),
    ):
        ab.add_argument(
            flag,
            nargs=2,
            action="append",
            metavar=("NAME", "VALUE"),
            help=help_ + "; repeatable",
            dest={"-p": "parameter", "--a": "a", "--b": "b"}[flag],
        )
    ab.add_argument("-f", "--file", action="append", metavar="YAML", help="parameters for both")
    ab.add_argument("--a-file", action="append", metavar="YAML", help="parameters for A only")
    ab.add_argument("--b-file", action="append", metavar="YAML", help="parameters for B only")
    ab.add_argument("--a-python", default=None, help="Python of another checkout's venv for A")
    ab.add_argument("--b-python", default=None, help="Python of another checkout's venv for B")
    ab.add_argument("--data-dir", default="data", help="where lab results are saved (data/)")
    ab.add_argument("--output-dir", default="runs", help="where executed notebooks go (runs/)")
    _add_verdict_options(ab)
    ab.set_defaults(handler=cmd_ab)


def _add_calibrate(sub: Any) -> None:
    cal = sub.add_parser(
        "calibrate", help="this machine's run-to-run spread per metric, from 3+ alike runs"
    )
    cal.add_argument("runs", nargs="+", metavar="RUN", help="runs of one code and parameters")
    cal.add_argument("--data-dir", default="data", help="where the calibration is saved (data/)")
    cal.set_defaults(handler=cmd_calibrate)


def _add_report(sub: Any) -> None:
    rep = sub.add_parser("report", help="run every lab notebook and build the HTML report")
    rep.add_argument(
        "--quick",
        action="store_true",
        help="small parameters (about 3 minutes on a 2-core machine, the full report about 12)",
    )
    rep.add_argument(
        "--runs",
        type=int,
        default=1,
        metavar="K",
        help="repeat the report K times, the lab order rotated each time "
        "(compare needs 4+ runs per side)",
    )
    rep.add_argument(
        "--backend",
        choices=["auto", "docker", "local"],
        default="auto",
        help="where the labs' servers come from (auto: docker when a daemon answers and an "
        "image is present, else local binaries)",
    )
    rep.add_argument("--output-dir", default="runs", help="where the run directory goes (runs/)")
    rep.add_argument("--data-dir", default="data", help="where lab results are saved (data/)")
    rep.add_argument(
        "--notebooks-dir", default=None, help="folder of the lab notebooks (default: shipped)"
    )
    rep.add_argument(
        "--labs",
        nargs="+",
        metavar="NAME",
        help=f"run only these labs ({' '.join(LAB_NAMES)})",
    )
    rep.add_argument("--show-code", action="store_true", help="keep code cells in the HTML")
    rep.set_defaults(handler=cmd_report)


def _add_compare(sub: Any) -> None:
    cmp_ = sub.add_parser(
        "compare", help="key metrics of two sets of result runs, each run one replicate"
    )
    cmp_.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="A B (one run each), or with --vs: side A's runs (data/<exp>/<run_id>, or "
        "data/<exp> for its latest run)",
    )
    cmp_.add_argument(
        "--vs", nargs="+", metavar="RUN", default=None, help="side B's runs (candidate)"
    )
    cmp_.add_argument(
        "--allow-different",
        action="store_true",
        help="compare runs made with different parameters (listed) instead of refusing",
    )
    cmp_.add_argument(
        "--paired",
        action="store_true",
        help="the i-th runs of A and B ran next to each other (perfkit ab): compare pairs",
    )
    cmp_.add_argument(
        "--calibration",
        default="auto",
        metavar="RUN|auto|none",
        help="noise floors: a perfkit calibrate run, none, or auto (the latest made from "
        "runs like side A's, under --data-dir)",
    )
    cmp_.add_argument("--data-dir", default="data", help="where calibrations are found (data/)")
    _add_verdict_options(cmp_)
    cmp_.set_defaults(handler=cmd_compare)


def _add_sweep(sub: Any) -> None:
    swp = sub.add_parser("sweep", help="run a notebook once per point of a parameter grid")
    swp.add_argument("notebook", metavar="LAB|NOTEBOOK", help=NOTEBOOK_HELP)
    swp.add_argument("--grid", required=True, help="YAML: parameter -> list of values")
    swp.add_argument("-f", "--file", default=None, help="YAML of fixed parameters for every point")
    swp.add_argument("--scheduler", default=None, help="dask.distributed scheduler address")
    swp.add_argument("--output-dir", default="runs", help="where the sweep directory goes (runs/)")
    swp.set_defaults(handler=cmd_sweep)


def _add_simulate(sub: Any) -> None:
    sim = sub.add_parser(
        "simulate", help="simulated reconnect herds: strategies x fleet sizes x seeds (dask)"
    )
    sim.add_argument(
        "--strategies",
        default="naive,exponential,full_jitter,decorrelated_jitter",
        help="comma-separated retry strategy names",
    )
    sim.add_argument("--sizes", default="1000,10000", help="comma-separated client counts")
    sim.add_argument("--seeds", type=int, default=3, help="seeds per cell (0..N-1)")
    sim.add_argument(
        "--costs",
        default=None,
        metavar="YAML",
        help="measured setup costs (cores, server_cpu_per_connect_s, client_cpu_per_attempt_s, "
        "connect_s, refused_s): the contention model; without, the first-come-first-served one",
    )
    sim.add_argument("--outage-s", type=float, default=1.0, help="seconds the server is down")
    sim.add_argument("--connect-timeout", type=float, default=2.0, help="per attempt, seconds")
    sim.add_argument("--scheduler", default=None, help="dask.distributed scheduler address")
    sim.add_argument("--output", default=None, metavar="CSV", help="write the rows here")
    sim.set_defaults(handler=cmd_simulate)


def _add_servers(sub: Any) -> None:
    srv = sub.add_parser(
        "servers",
        help="list (or --stop) the servers the pytest plugin keeps with --perfkit-reuse: "
        "this user's, of the current PERFKIT_REUSE_NAMESPACE",
    )
    srv.add_argument("--stop", action="store_true", help="remove them (all, or the KEYs given)")
    srv.add_argument(
        "--all",
        action="store_true",
        help="every namespace, not only the current one (--stop asks first on a terminal)",
    )
    srv.add_argument("--yes", action="store_true", help="with --all --stop: do not ask")
    srv.add_argument("keys", nargs="*", metavar="KEY", help="only these reuse keys")
    srv.set_defaults(handler=cmd_servers)


def _add_doctor(sub: Any) -> None:
    doc = sub.add_parser("doctor", help="which PostgreSQL backends work here", add_help=False)
    doc.add_argument("rest", nargs=argparse.REMAINDER)
    doc.set_defaults(handler=cmd_doctor)


def _add_image(sub: Any) -> None:
    img = sub.add_parser("image", help="container image tools")
    img_sub = img.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    build = img_sub.add_parser(
        "build", help="build the air-gapped PostgreSQL image", add_help=False
    )
    build.add_argument("rest", nargs=argparse.REMAINDER)
    build.set_defaults(handler=cmd_image)


#: Commands of the light install (``pip install perfkit``); the others need the lab extra.
LIGHT_COMMANDS = (cmd_servers, cmd_doctor, cmd_image)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perfkit",
        description="Measure PostgreSQL connection retry, pooling, PgBouncer, streaming reads "
        "and test-database lifecycles on real servers.",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_run,
        _add_report,
        _add_compare,
        _add_ab,
        _add_calibrate,
        _add_sweep,
        _add_simulate,
        _add_servers,
        _add_doctor,
        _add_image,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``perfkit`` console script; returns the exit code."""
    from perfkit.postgres import cleanup

    cleanup.install_signal_handlers()  # before anything starts: SIGTERM/SIGHUP unwind and clean up
    parser = build_parser()
    argv = list(argv) if argv is not None else sys.argv[1:]
    args, extra = parser.parse_known_args(argv)
    if args.handler in (cmd_doctor, cmd_image):  # the rest goes, in order, to their own parsers
        args.rest = argv[argv.index(args.command) + (2 if args.command == "image" else 1) :]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.handler not in LIGHT_COMMANDS:
            from perfkit.extras import require_lab

            require_lab(f"perfkit {args.command}")  # a light install: one sentence, no traceback
        return int(args.handler(args))
    except PerfkitError as exc:
        print(f"perfkit: error: {mask(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("perfkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except cleanup.Terminated as exc:
        print(f"perfkit: terminated by {exc.signal_name}", file=sys.stderr)
        return int(exc.code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
