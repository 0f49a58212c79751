"""Execute notebooks headless with papermill: validate, run, export HTML.

Parameters are checked *before* a kernel starts: against the lab's ``Params``
for a lab notebook (names, types and values, see :mod:`perfkit.lab`), else
against the notebook's ``parameters`` cell (a name the cell does not define, or
a value whose type does not match the default's type or the cell's annotation).
Either way a problem raises ConfigError.

Each run writes ``<output_dir>/<run_id>/<stem>.ipynb`` (the executed notebook,
also when a cell fails; cell indices in errors count the input notebook's
cells), ``<stem>.html`` (code hidden unless asked) and ``<stem>.run.json``
(parameters, status, wall time and the kernel/papermill overhead: wall time
minus the time spent inside cells). After every execution, servers that a
killed kernel could not stop are removed.

SIGTERM and SIGHUP reach the runner, not the kernel: it runs in a session of
its own, and one whose runner is gone exits without cleaning up. So in the
runner they raise :class:`~perfkit.postgres.cleanup.Terminated`, and papermill
shuts the kernel down as on Ctrl-C: it interrupts the running cell, whose
servers are removed by the kernel itself, then asks the kernel to exit. A
kernel papermill did not shut down (the signal came while it started) is
stopped by :func:`stop_kernels`, connection file included, before the sweep.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from perfkit import params as params_mod
from perfkit import registry
from perfkit.dsn import mask
from perfkit.errors import BackendUnavailable, ConfigError, NotebookFailed, PerfkitError
from perfkit.results import mask_values, new_run_id

log = logging.getLogger(__name__)

KERNEL_NAME = "python3"
RUN_FILE_SUFFIX = ".run.json"

_ANNOTATION_NAMES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "None": None,
}


@dataclass(frozen=True, kw_only=True)
class Parameter:
    """One assignment of a notebook's parameters cell."""

    name: str
    default_source: str
    default: Any = None
    expected: tuple[type, ...] | None = None  # None: any value is accepted


@dataclass(frozen=True, kw_only=True)
class NotebookRun:
    """The outcome of executing one notebook."""

    run_id: str
    notebook: Path
    output_dir: Path
    executed: Path
    html: Path | None
    parameters: dict[str, Any]
    ok: bool
    wall_s: float
    cells_s: float
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def overhead_s(self) -> float:
        """Wall time not spent inside cells: kernel start, papermill, writing files."""
        return self.wall_s - self.cells_s


# -- parameters ---------------------------------------------------------------


def _parameters_cell(nb: nbformat.NotebookNode, path: Path) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    raise ConfigError(f"{path} has no code cell tagged 'parameters'")


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook in ``path`` (nbformat 4); ConfigError naming the file if it is not one."""
    try:
        return nbformat.read(path, as_version=4)
    except OSError as exc:
        raise ConfigError(f"cannot read notebook {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"notebook {path} is not UTF-8 text (byte {exc.start})") from None
    except nbformat.reader.NotJSONError:
        raise ConfigError(
            f"notebook {path} is not JSON: an .ipynb file is the JSON Jupyter saves"
        ) from None
    except (ValueError, AttributeError, KeyError, TypeError, nbformat.ValidationError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"notebook {path} is not a valid Jupyter notebook: {reason}") from None


def _expected_from(default: Any, annotation: ast.expr | None) -> tuple[type, ...] | None:
    if annotation is not None:
        try:
            value = eval(  # only builtin type names, no builtins available
                compile(ast.Expression(annotation), "<annotation>", "eval"),
                {"__builtins__": {}},
                dict(_ANNOTATION_NAMES),
            )
            return params_mod._types_of(value)
        except Exception:
            return None
    if default is None:
        return None
    if isinstance(default, bool):
        return (bool,)
    return (type(default),)


def notebook_parameters(path: str | os.PathLike[str]) -> dict[str, Parameter]:
    """The parameters a notebook declares, with the types their defaults imply."""
    import papermill

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"notebook {path} does not exist")
    nb = read_notebook(path)
    cell = _parameters_cell(nb, path)
    found: dict[str, Parameter] = {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError:
        tree = ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, annotation = node.targets[0], None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, annotation = node.target, node.annotation
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        source = ast.get_source_segment(cell.source, node.value) or ""
        try:
            default = ast.literal_eval(node.value)
            literal = True
        except ValueError:
            default, literal = None, False
        expected = _expected_from(default, annotation) if literal or annotation else None
        found[target.id] = Parameter(
            name=target.id, default_source=source, default=default, expected=expected
        )
    # papermill's own view, so every name it would inject is known to us too
    for name, info in papermill.inspect_notebook(str(path)).items():
        found.setdefault(name, Parameter(name=name, default_source=str(info.get("default"))))
    # a lab's Params (the lab contract) or the notebook's own validate_globals spec
    # are more precise than the defaults
    lab = registry.for_notebook(path)
    spec = lab.Params.spec() if lab is not None else notebook_spec(nb, cell)
    for name, expected in (spec or {}).items():
        if name in found:
            try:
                types_ = params_mod._types_of(expected)
            except ConfigError:
                continue
            found[name] = dataclasses.replace(found[name], expected=types_)
    return found


def _calls_validate_globals(node: ast.AST) -> ast.Call | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and sub.args:
            func = sub.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "validate_globals":
                return sub
    return None


def notebook_spec(
    nb: nbformat.NotebookNode, parameters_cell: nbformat.NotebookNode
) -> dict[str, Any] | None:
    """The spec a notebook passes to ``params.validate_globals`` (None if not found).

    Only the imports and assignments before that call in its cell are run
    here (e.g. ``from perfkit.pool import lab`` for ``lab.PARAMS_SPEC``), so
    parameters are checked against the exact spec before a kernel starts.
    """
    cells = nb.cells[nb.cells.index(parameters_cell) + 1 :]
    for cell in cells:
        if cell.cell_type != "code" or "validate_globals" not in cell.source:
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            return None
        namespace: dict[str, Any] = {}
        for stmt in tree.body:
            call = _calls_validate_globals(stmt)
            if call is not None:
                try:
                    spec = eval(compile(ast.Expression(call.args[0]), "<spec>", "eval"), namespace)
                except Exception:
                    return None
                return dict(spec) if isinstance(spec, Mapping) else None
            if isinstance(stmt, ast.Import | ast.ImportFrom | ast.Assign):
                try:
                    exec(
                        compile(ast.Module(body=[stmt], type_ignores=[]), "<spec>", "exec"),
                        namespace,
                    )
                except Exception:
                    return None
        return None
    return None


def parse_cli_value(raw: str, parameter: Parameter | None) -> Any:
    """Turn a ``-p name value`` string into a value, guided by the parameter's type."""
    expected = parameter.expected if parameter else None
    if expected and str in expected:
        if type(None) in expected and raw in ("None", "null"):
            return None
        if set(expected) <= {str, type(None)}:
            return raw
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        return raw


def validate_parameters(path: str | os.PathLike[str], values: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``values`` against the notebook's parameters cell; ConfigError names the problem."""
    declared = notebook_parameters(path)
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ConfigError(
            f"{Path(path).name}: unknown parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; known parameters: {', '.join(sorted(declared)) or '(none)'}"
        )
    for name, value in values.items():
        expected = declared[name].expected
        if expected is not None and not params_mod.matches(value, expected):
            raise ConfigError(
                f"{Path(path).name}: parameter {name!r} expects {params_mod.type_name(expected)} "
                f"(default {declared[name].default_source}), got {type(value).__name__} {value!r}"
            )
    lab = registry.for_notebook(path)
    if lab is not None:  # the lab's own value checks (ranges, names), before any kernel
        try:
            lab.Params.from_mapping(values)
        except ConfigError as exc:
            raise ConfigError(f"{Path(path).name}: {exc}") from None
    return dict(values)


def parse_cli_parameters(
    path: str | os.PathLike[str], pairs: list[tuple[str, str]] | list[list[str]]
) -> dict[str, Any]:
    """Values for ``-p name value`` pairs, typed by the notebook's defaults."""
    declared = notebook_parameters(path)
    return {name: parse_cli_value(raw, declared.get(name)) for name, raw in pairs}


# -- execution ----------------------------------------------------------------


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:80]
    return ""


def _source_index(notebook: Path, source: str, fallback: int) -> int:
    """Index of the cell with ``source`` in the input notebook (papermill counts injected cells)."""
    for index, cell in enumerate(nbformat.read(notebook, as_version=4).cells):
        if cell.source == source:
            return index
    return fallback


def _cells_seconds(nb: nbformat.NotebookNode) -> float:
    total = 0.0
    for cell in nb.cells:
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if isinstance(duration, int | float):
            total += float(duration)
    return total


def mask_file(path: Path) -> None:
    """Rewrite ``path`` with every DSN password in it masked (:func:`perfkit.dsn.mask`)."""
    text = path.read_text(encoding="utf-8")
    if (masked := mask(text)) != text:
        path.write_text(masked, encoding="utf-8")


def export_html(executed: Path, html: Path, *, show_code: bool = False) -> Path:
    """Export an executed notebook to HTML (code hidden unless ``show_code``)."""
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(exclude_input=not show_code, exclude_input_prompt=True)
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    html.write_text(mask(body), encoding="utf-8")
    return html


#: The kernel managers this process created, each with the thread that created it.
_MANAGERS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
#: How long a kernel that papermill did not shut down gets to stop after SIGTERM.
KERNEL_STOP_TIMEOUT_S = 10.0
#: How long papermill's shutdown of an interrupted kernel waits before SIGTERM (half of
#: it) and SIGKILL (all of it). jupyter_client's 5 s can cut a server's removal short
#: on a busy machine, and SIGKILL can leave a half-removed data directory behind.
KERNEL_SHUTDOWN_WAIT_S = 30.0


@functools.cache
def ipc_kernel_manager() -> type:
    """A kernel manager using unix sockets, not unencrypted loopback TCP (and no warning).

    Its instances are remembered, so that :func:`stop_kernels` finds kernels papermill left.
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IpcKernelManager(AsyncKernelManager):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _MANAGERS[self] = threading.get_ident()

        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("shutdown_wait_time")
        def _shutdown_wait_time_default(self) -> float:
            return KERNEL_SHUTDOWN_WAIT_S

    return IpcKernelManager


def _kernel_process(manager: Any) -> Any:
    """The running kernel process (a ``subprocess.Popen``) of a kernel manager, or None."""
    process = getattr(getattr(manager, "provisioner", None), "process", None)
    return process if process is not None and process.returncode is None else None


def stop_kernels(*, thread: int | None = None) -> None:
    """Stop the kernels papermill did not shut down and remove their connection files.

    That happens when a signal arrives while a kernel starts. Each kernel gets
    SIGTERM (to remove its servers) and :data:`KERNEL_STOP_TIMEOUT_S`, then
    SIGKILL. ``thread``: only the kernels started by that thread.
    """
    for manager, owner in list(_MANAGERS.items()):
        if thread is not None and owner != thread:
            continue
        process = _kernel_process(manager)
        if process is not None:
            with contextlib.suppress(OSError):
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(KERNEL_STOP_TIMEOUT_S)
                except Exception:  # still alive (or the wait was cut short): no more chances
                    process.kill()
                    process.wait(KERNEL_STOP_TIMEOUT_S)
        with contextlib.suppress(Exception):
            manager.cleanup_connection_file()
            manager.cleanup_ipc_files()


def kernel_environment() -> dict[str, str]:
    """Environment for the kernel: ours, minus settings that break figure capture."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the inline backend must capture figures
    return env


def sweep_after_kernel() -> list[str]:
    """Remove servers a kernel that died (killed, crashed) left behind.

    A kernel that exits normally or is interrupted stops its servers itself;
    one killed outright cannot, so after every execution the runner removes
    perfkit containers and data directories whose owning process is gone.
    Returns what was removed (each item is also logged as a warning).
    """
    from perfkit.postgres import leaks

    client = None
    try:
        from perfkit.postgres.docker import docker_client

        client = docker_client(timeout=1)
    except BackendUnavailable:
        pass
    try:
        removed = leaks.sweep(docker_client=client)
    except Exception as exc:  # best effort: never hide the run's own outcome
        log.warning("could not sweep what a dead kernel may have left: %s", exc)
        return []
    for item in removed:
        log.warning("removed what a dead kernel left behind: %s", item)
    return removed


def _papermill(
    notebook: Path,
    executed: Path,
    values: Mapping[str, Any],
    *,
    cwd: Path,
    progress_bar: bool,
    start_timeout: float,
) -> NotebookFailed | None:
    """Run papermill; a failing cell comes back as NotebookFailed naming it (masked)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    saved_env = os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend keeps figures
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed),
            parameters=dict(values),
            kernel_name=KERNEL_NAME,
            progress_bar=progress_bar,
            cwd=str(cwd),
            start_timeout=int(start_timeout),
            kernel_manager_class=ipc_kernel_manager(),
        )
    except PapermillExecutionError as exc:
        index = _source_index(notebook, exc.source, exc.cell_index)
        return NotebookFailed(
            mask(
                f"{notebook.name}: cell {index} (In [{exc.exec_count}], "
                f"starting `{_first_line(exc.source)}`) raised {exc.ename}: {exc.evalue}; "
                f"executed notebook saved to {executed}"
            ),
            notebook=executed,
            cell_index=index,
            ename=exc.ename,
            evalue=mask(str(exc.evalue)),
        )
    finally:
        if saved_env is not None:
            os.environ["MPLBACKEND"] = saved_env
        stop_kernels(thread=threading.get_ident())  # those a signal caught starting
        sweep_after_kernel()
    return None


def _record(
    run_id: str,
    notebook: Path,
    values: Mapping[str, Any],
    started: dt.datetime,
    error: NotebookFailed | None,
    wall: float,
    cells: float,
) -> dict[str, Any]:
    """What ``<name>.run.json`` says of a run (every string masked)."""
    return mask_values(
        {
            "run_id": run_id,
            "notebook": str(notebook),
            "parameters": dict(values),
            "started_at": started.isoformat(),
            "ok": error is None,
            "error": str(error) if error else None,
            "wall_s": wall,
            "cells_s": cells,
            "overhead_s": wall - cells,
        }
    )


def execute(
    notebook: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    output_dir: str | os.PathLike[str] = "runs",
    run_id: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    progress_bar: bool | None = None,
    html: bool = True,
    show_code: bool = False,
    start_timeout: float = 60,
    raise_on_error: bool = True,
) -> NotebookRun:
    """Validate ``parameters`` then execute ``notebook`` into ``<output_dir>/<run_id>/``.

    Raises ConfigError before any kernel starts when a parameter is unknown or
    ill-typed; raises NotebookFailed (after saving the executed notebook and
    its HTML) when a cell fails, naming the cell and the exception.
    """
    from perfkit.postgres import cleanup

    notebook = Path(notebook).resolve()
    values = validate_parameters(notebook, parameters or {})
    cleanup.install_signal_handlers()  # SIGTERM/SIGHUP shut the kernel down, as Ctrl-C does
    run_id = run_id or new_run_id()
    out = Path(output_dir) / run_id
    out.mkdir(parents=True, exist_ok=True)
    executed = out / f"{notebook.stem}.ipynb"
    html_path = out / f"{notebook.stem}.html" if html else None
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    error = _papermill(
        notebook,
        executed,
        values,
        cwd=Path(cwd) if cwd is not None else notebook.parent,
        progress_bar=sys.stdout.isatty() if progress_bar is None else progress_bar,
        start_timeout=start_timeout,
    )
    wall = time.perf_counter() - t0
    cells = 0.0
    if executed.is_file():
        mask_file(executed)  # papermill stored the parameters as given (a lab's dsn)
        cells = _cells_seconds(nbformat.read(executed, as_version=4))
        if html_path is not None:
            export_html(executed, html_path, show_code=show_code)
    elif error is None:  # pragma: no cover - papermill always writes the output
        raise PerfkitError(f"papermill wrote no executed notebook for {notebook}")
    record = _record(run_id, notebook, values, started, error, wall, cells)
    (out / f"{notebook.stem}{RUN_FILE_SUFFIX}").write_text(
        json.dumps(record, indent=2, default=str) + "\n"
    )
    if error is not None and raise_on_error:
        raise error
    return NotebookRun(
        run_id=run_id,
        notebook=notebook,
        output_dir=out,
        executed=executed,
        html=html_path,
        parameters=values,
        ok=error is None,
        wall_s=wall,
        cells_s=cells,
        error=str(error) if error else None,
        record=record,
    )


# -- keeping lab notebooks in step with their Params ----------------------------


def sync_lab_notebooks(folder: str | os.PathLike[str]) -> list[Path]:
    """Rewrite each registered lab notebook's parameters cell from its ``Params``.

    Returns the notebooks that changed. Run it after changing a lab's Params:
    ``python -m perfkit.notebooks --sync-labs``.
    """
    changed = []
    for lab in registry.LABS:
        path = Path(folder) / lab.notebook
        nb = nbformat.read(path, as_version=4)
        cell = _parameters_cell(nb, path)
        wanted = lab.Params.notebook_cell()
        if cell.source != wanted:
            cell.source = wanted
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m perfkit.notebooks")
    parser.add_argument("--sync-labs", action="store_true", help="regenerate parameters cells")
    parser.add_argument("--folder", default=str(Path(__file__).resolve().parent / "labs"))
    args = parser.parse_args(argv)
    if not args.sync_labs:
        parser.print_help()
        return 2
    for path in sync_lab_notebooks(args.folder):
        print("updated", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
