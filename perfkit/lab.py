"""The lab contract: what every lab provides, and all that report, compare and sweep use.

A lab is one module of the package plus one notebook. The module defines:

``Params``
    A frozen dataclass derived from :class:`LabParams`. It is the only home of
    each parameter's name, type, default and help (declared with :func:`param`).
    Every int a parameter holds must fit in a signed 64-bit integer; ``check()``
    adds each lab's own ranges.
    The notebook's ``parameters`` cell is generated from it
    (:meth:`LabParams.notebook_cell`, kept in step by a test), the way
    papermill's ``inspect_notebook`` reads name, type, default and help.
    A default of ``None`` may stand for a value that depends on ``quick``
    (``param(None, ..., full=4, quick=1)``); it is resolved once, when the
    Params are built, so a lab reads plain attributes (``params.duration_s``).
    Values that depend on other parameters come from ``derived()``, set next.
    :meth:`LabParams.as_dict` keeps the values as they were given.
``LAB``
    An object following :class:`Lab`: ``run(params, server, progress)`` returns
    :class:`Results`; ``headlines``, ``figures`` and ``conclusions`` read only
    those results, so they work as well on a run loaded from disk
    (:meth:`Results.of_run`).

Headlines use one long schema (:data:`perfkit.headlines.HEADLINE_COLUMNS`):
``metric, variant, value, unit, label, n, ci_low, ci_high``. The raw samples
behind them, when a lab has them, go in the ``samples`` frame
(``metric, variant, unit, value``: one row per measurement, in the headline's
unit), which compare uses for intervals of ratios.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from perfkit import params as param_checks
from perfkit import validate
from perfkit.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from perfkit.headlines import HeadlineSpec
    from perfkit.postgres import PostgresServer, ServerSettings

Progress = Callable[[str], None]
BACKENDS = ("auto", "docker", "local")
SAMPLES_FRAME = "samples"
SAMPLE_COLUMNS = ("metric", "variant", "unit", "value")
# Every lab's samples also say which run or repetition each came from, in the column
# perfkit.headlines.RUN_COLUMN (the unit of replication); runs saved by older code may not.
# Not imported here: this module stays light (no pandas) for the processes that load it.
_UNSET: Any = object()


def param(
    default: Any,
    help: str,
    *,
    full: Any = _UNSET,
    quick: Any = _UNSET,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """A lab parameter: its default and help, and what ``None`` means in full and quick runs.

    ``full``/``quick`` apply only when the default is ``None`` (no ``quick``: the
    same as ``full``); the help line of
    the notebook then reads ``<help>; None: <full> (quick <quick>)``. Either may be
    a function computing the value (its docstring's first line is the help).
    Sequence defaults are tuples (frozen), shown as lists in the notebook.
    """
    if (full is not _UNSET or quick is not _UNSET) and default is not None:
        raise ConfigError("full/quick defaults apply only to parameters whose default is None")
    if isinstance(default, list):
        default = tuple(default)
    metadata = {"help": help, "full": full, "quick": quick, "choices": choices}
    return field(default=default, metadata=metadata)


def literal(value: Any) -> str:
    """A Python literal for a notebook cell, formatted as ruff would (double quotes, lists)."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"{value!r} cannot be written as a notebook parameter")


def _shown(value: Any, width: int = 24) -> str:
    """A default for a help line: the literal, or ``N items`` when it would be too long.

    A computed default (a function of the machine, e.g. its cores) shows its docstring.
    """
    if callable(value):
        return (value.__doc__ or value.__name__).strip().splitlines()[0]
    text = literal(value)
    if len(text) > width and isinstance(value, list | tuple):
        return f"{len(value)} items"
    return text


def _accepted(annotation: Any) -> tuple[type, ...]:
    """The types a notebook may pass for a field (lists where the field keeps a tuple)."""
    out: list[type] = []
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            out.extend(_accepted(arg))
    elif origin is tuple or annotation is tuple:
        out.extend((list, tuple))
    elif origin is not None:
        out.append(origin)
    elif annotation is None or annotation is type(None):
        out.append(type(None))
    else:
        out.append(annotation)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True, kw_only=True)
class Parameter:
    """One parameter as a reader sees it: papermill's name, type, default and help."""

    name: str
    type_name: str
    default: Any
    help: str
    accepted: tuple[type, ...]


@dataclass(frozen=True, kw_only=True)
class LabParams:
    """Parameters every lab has. Subclasses add theirs with :func:`param`."""

    backend: str = param("auto", '"auto" | "docker" | "local"', choices=BACKENDS)
    quick: bool = param(False, "small sweeps (CI): each notebook in one to two minutes")
    out_dir: str = param("../data", "results go to <out_dir>/<experiment>/<run_id>/")
    seed: int = param(1, "random seed (jitter, data, run order)")
    stages: tuple[str, ...] | None = param(None, "run only these stages (None: all)")
    reuse_saved: bool = param(
        False, "load the newest saved run with these parameters instead of measuring"
    )

    #: Parameters the report sets on every lab (the rest keep their defaults).
    REPORT_PARAMETERS: ClassVar[tuple[str, ...]] = ("backend", "quick", "out_dir")
    #: The lab's stages, in the order it runs them: ``stages`` picks some of them.
    STAGES: ClassVar[tuple[str, ...]] = ()
    #: Parameters that change how a run is shown or where it goes, not what it measures
    #: (a saved run with other values still answers: :func:`perfkit.labrun.latest_or_run`).
    OUTPUT_PARAMETERS: ClassVar[tuple[str, ...]] = ("out_dir", "reuse_saved")
    if TYPE_CHECKING:  # set in __post_init__, not a field (fields are the parameters)
        _given: Mapping[str, Any]

    def __post_init__(self) -> None:
        given: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            given[f.name] = value
            if value is None:
                value = self._resolved_default(f)
                object.__setattr__(self, f.name, value)
            validate.int64(f"parameter {f.name!r}", value)  # every int, before any check uses it
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise ConfigError(
                    f"parameter {f.name!r} must be one of "
                    f"{', '.join(repr(c) for c in choices)}, got {value!r}"
                )
        object.__setattr__(self, "_given", types.MappingProxyType(given))
        self._check_stages()
        self._apply_derived()
        self.check()

    def _check_stages(self) -> None:
        """ConfigError listing the lab's stages when ``stages`` names another (or none)."""
        if self.stages is None:
            return
        valid = ", ".join(repr(s) for s in self.STAGES) or "none: it runs as one piece"
        if not self.stages:
            raise ConfigError(f"parameter 'stages' must name at least one stage ({valid})")
        for name in self.stages:
            if not isinstance(name, str) or name not in self.STAGES:
                raise ConfigError(
                    f"parameter 'stages': unknown stage {name!r}; this lab's stages: {valid}"
                )

    def ran(self, stage: str) -> bool:
        """Whether this run includes ``stage`` (every stage when ``stages`` is None)."""
        if stage not in self.STAGES:
            raise ConfigError(f"unknown stage {stage!r}; this lab's stages: {self.STAGES}")
        return self.stages is None or stage in self.stages

    def _apply_derived(self) -> None:
        """Set the values :meth:`derived` gives (once, after ``None`` is resolved)."""
        names = {f.name for f in dataclasses.fields(self)}
        for name, value in self.derived().items():
            if name not in names:
                raise TypeError(f"{type(self).__name__}.derived() names {name!r}: not a parameter")
            object.__setattr__(self, name, tuple(value) if isinstance(value, list) else value)

    def _resolved_default(self, f: dataclasses.Field[Any]) -> Any:
        """What ``None`` stands for in this run (full or quick), or ``None`` when nothing."""
        full, quick = f.metadata.get("full", _UNSET), f.metadata.get("quick", _UNSET)
        chosen = quick if self.quick and quick is not _UNSET else full
        if chosen is _UNSET:
            return None
        if callable(chosen):
            chosen = chosen()
        return tuple(chosen) if isinstance(chosen, list) else chosen

    def derived(self) -> Mapping[str, Any]:
        """Values set from other parameters: name -> value (default: none).

        The only place a lab sets a default that depends on other parameters
        (a name resolved to a path, a list chosen by another parameter). It is
        applied once, when the Params are built: after ``None`` is resolved to
        its full/quick default and before :meth:`check`, which only checks.
        :meth:`as_dict` still gives the values as they were given.
        """
        return {}

    def check(self) -> None:
        """Check values (ranges, names); raise ConfigError naming the parameter. No changes:
        derived values come from :meth:`derived`."""

    # -- the schema ---------------------------------------------------------------

    @classmethod
    def parameters(cls) -> dict[str, Parameter]:
        """Name -> :class:`Parameter`, in declaration order."""
        hints = typing.get_type_hints(cls)
        out: dict[str, Parameter] = {}
        for f in dataclasses.fields(cls):
            accepted = _accepted(hints[f.name])
            out[f.name] = Parameter(
                name=f.name,
                type_name=param_checks.type_name(accepted),
                default=f.default,
                help=cls._help_line(f),
                accepted=accepted,
            )
        return out

    @classmethod
    def _help_line(cls, f: dataclasses.Field[Any]) -> str:
        text = str(f.metadata.get("help", ""))
        if f.name == "stages":
            stages = ", ".join(cls.STAGES)
            text = f"None: all, or {stages}" if stages else "None (one piece)"
        full, quick = f.metadata.get("full", _UNSET), f.metadata.get("quick", _UNSET)
        if full is _UNSET and quick is _UNSET:
            return text
        parts = [f"None: {_shown(full)}"] if full is not _UNSET else []
        if quick is not _UNSET:
            parts.append(f"(quick {_shown(quick)})")
        return f"{text}; {' '.join(parts)}" if text else " ".join(parts)

    @classmethod
    def spec(cls) -> dict[str, tuple[type, ...]]:
        """The type spec :func:`perfkit.params.validate` checks values against."""
        return {name: p.accepted for name, p in cls.parameters().items()}

    @classmethod
    def notebook_cell(cls) -> str:
        """The source of the notebook's ``parameters`` cell."""
        lines = []
        for p in cls.parameters().values():
            line = f"{p.name} = {literal(p.default)}"
            lines.append(f"{line}  # {p.help}" if p.help else line)
        return "\n".join(lines)

    # -- building -----------------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> typing.Self:
        """Typed, checked parameters from names and values (unknown names are errors)."""
        checked = param_checks.validate(cls.spec(), values)
        hints = typing.get_type_hints(cls)
        for name, value in checked.items():
            wants_float = float in _accepted(hints[name])
            if wants_float and isinstance(value, int) and not isinstance(value, bool):
                try:
                    checked[name] = float(value)
                except OverflowError:
                    raise ConfigError(
                        f"parameter {name!r} is too large for a float, got {value!r}"
                    ) from None
        return cls(**checked)

    @classmethod
    def from_notebook(cls, namespace: MutableMapping[str, Any]) -> typing.Self:
        """Parameters from a notebook's globals, right after its parameters cell.

        Every public global (but the lab object itself, ``LAB``) counts as a
        parameter, so a misspelt ``-p`` name is an error even under plain
        papermill (which only warns).
        """
        labs = [name for name, value in namespace.items() if getattr(value, "Params", None) is cls]
        values = param_checks.validate_globals(cls.spec(), namespace, ignore=labs)
        return cls.from_mapping(values)

    def replace(self, **changes: Any) -> typing.Self:
        """These parameters with some changed, ``None`` defaults resolved anew.

        Use this, not :func:`dataclasses.replace`, which would carry values
        resolved for full runs into a quick one.
        """
        return type(self)(**{**self._given, **changes})

    def as_dict(self) -> dict[str, Any]:
        """Values as they were given (``None`` unresolved; lists, not tuples): for metadata.

        Runs are compared on these, so a run keeps saying "the quick default"
        rather than the value that default had on the machine that made it.
        """
        return {name: list(v) if isinstance(v, tuple) else v for name, v in self._given.items()}

    def _repr_html_(self) -> str:
        """The resolved values as ``name = value`` items that wrap at spaces, never inside a
        word (a notebook's plain-text output breaks long lines mid-word)."""
        import html

        items = (
            f'<code style="white-space:normal;word-break:normal">{html.escape(f.name)} = '
            f"{html.escape(repr(getattr(self, f.name)))}</code>"
            for f in dataclasses.fields(self)
        )
        return f"<p><b>{type(self).__name__}</b>: " + ", ".join(items) + "</p>"


@dataclass(frozen=True, kw_only=True)
class Results:
    """What a lab's run returns: named frames and a description of the server(s)."""

    frames: Mapping[str, pd.DataFrame]
    server: Mapping[str, Any] | None = None
    run_id: str = ""
    #: The stages this run measured; None: all of them (or a run saved before stages).
    stages: tuple[str, ...] | None = None

    def ran(self, stage: str) -> bool:
        """Whether ``stage`` was measured in this run (cells and conclusions skip it if not)."""
        return self.stages is None or stage in self.stages

    def show_stage(self, stage: str) -> bool:
        """:meth:`ran`, for a notebook cell: prints "not measured in this run" when not."""
        if self.ran(stage):
            return True
        print(f"{stage}: not measured in this run (stages={list(self.stages or ())})")
        return False

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.frames[name]

    def get(self, name: str) -> pd.DataFrame | None:
        return self.frames.get(name)

    @property
    def samples(self) -> pd.DataFrame:
        """Raw samples behind the headlines (``metric, variant, unit, value``); may be empty."""
        import pandas as pd  # lazily: the streaming lab's child process imports this module

        frame = self.frames.get(SAMPLES_FRAME)
        return frame if frame is not None else pd.DataFrame(columns=list(SAMPLE_COLUMNS))

    def describe(self) -> dict[str, Any] | None:
        """The server description saved with the run (what ``results.save`` asks of a server)."""
        return dict(self.server) if self.server is not None else None

    @classmethod
    def of_run(cls, run: Any) -> Results:
        """Results from a run loaded with :func:`perfkit.results.load`."""
        stages = (run.metadata.get("params") or {}).get("stages")
        return cls(
            frames=dict(run.frames),
            server=run.metadata.get("server"),
            run_id=run.run_id,
            stages=tuple(stages) if stages is not None else None,
        )


@runtime_checkable
class Lab(Protocol):
    """What every lab module exposes as ``LAB``."""

    name: str  # the experiment: results go under data/<name>/
    title: str
    notebook: str  # file name of its notebook in perfkit/labs (notebooks/)
    Params: type[LabParams]

    def server_settings(self, params: Any) -> ServerSettings | None:
        """The server run() needs started for it, or None when the lab starts its own."""
        ...

    def run(self, params: Any, server: PostgresServer | None, progress: Progress) -> Results:
        """Measure; return frames (and raw samples). No plotting, no saving."""
        ...

    def headlines(self, results: Results) -> pd.DataFrame:
        """Headline numbers in the long schema (:func:`perfkit.headlines.headline_frame`)."""
        ...

    def headline_specs(self) -> Mapping[str, HeadlineSpec]:
        """Each headline metric's :class:`perfkit.headlines.HeadlineSpec` (statistic, better
        direction): how the report reads runs saved before their headlines said it."""
        ...

    def figures(self, results: Results) -> Iterator[tuple[str, Figure]]:
        """(caption, matplotlib Figure) for the report, from the results alone."""
        ...

    def conclusions(self, results: Results) -> str:
        """The closing text (Markdown) from the results alone."""
        ...
