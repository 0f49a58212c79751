"""Tidy results with metadata, written atomically and loaded back with one call.

A run is a directory ``<out_dir>/<experiment>/<run_id>/`` holding one CSV file
per DataFrame and ``metadata.json`` (run id, UTC times, git commit and dirty
flag, machine, Python and package versions, the server's description, the
parameters with every password masked, the seed, and the column dtypes so the
frames load back with the types they were saved with).

The directory is written under a hidden temporary name in the same parent and
renamed into place when complete, so a crash never leaves a half-written run
where :func:`load`, :func:`latest` or :func:`load_all` would see it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from perfkit.dsn import mask
from perfkit.errors import ConfigError, PerfkitError

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 2
NA_REP = r"\N"  # how a missing value is written (PostgreSQL COPY's), so "" stays a string
PACKAGES = (
    "perfkit",
    "pandas",
    "numpy",
    "psycopg",
    "psycopg-pool",
    "testcontainers",
    "papermill",
    "matplotlib",
    "pgserver",
    "dask",
    "distributed",
)
_TMP_PREFIX = ".tmp-"

# When this module was first imported: the default start time of a run, since
# notebooks import perfkit at the top and save at the end.
_IMPORTED_AT = dt.datetime.now(dt.UTC)


class _Describable(Protocol):
    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True, kw_only=True)
class Run:
    """One saved run: where it lives, its id, its metadata and its frames."""

    path: Path
    run_id: str
    metadata: dict[str, Any]
    frames: dict[str, pd.DataFrame] = field(repr=False)

    @property
    def experiment(self) -> str:
        return str(self.metadata.get("experiment", self.path.parent.name))


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id: UTC timestamp plus a short random suffix."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


# -- metadata -----------------------------------------------------------------


def mask_values(value: Any) -> Any:
    """Return ``value`` with every string (also nested in dicts/lists) passed through mask()."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {str(k): mask_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_values(v) for v in value]
    return value


def git_info(cwd: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the git repository ``cwd`` is in (None when not a repo)."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", *args],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def machine_info() -> dict[str, Any]:
    """Host name, platform, CPU count and total memory."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": None,
    }
    try:
        import psutil

        info["memory_bytes"] = int(psutil.virtual_memory().total)
    except Exception:  # pragma: no cover - psutil is a dependency
        pass
    return info


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that shape a measurement (None if absent)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    for attr in ("item", "tolist"):  # numpy scalars and arrays
        if hasattr(value, attr):
            try:
                return getattr(value, attr)()
            except (TypeError, ValueError):
                pass
    return repr(value)


def build_metadata(
    *,
    run_id: str,
    experiment: str,
    params: Mapping[str, Any] | None,
    server: _Describable | None,
    seed: int | None,
    started_at: dt.datetime,
    finished_at: dt.datetime,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata record of a run (JSON-serialisable, passwords masked)."""
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "run_id": run_id,
        "experiment": experiment,
        "started_at": started_at.astimezone(dt.UTC).isoformat(),
        "finished_at": finished_at.astimezone(dt.UTC).isoformat(),
        "git": git_info(),
        "machine": machine_info(),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "packages": package_versions(),
        "server": server.describe() if server is not None else None,
        "params": dict(params or {}),
        "seed": seed,
    }
    if extra:
        meta["extra"] = dict(extra)
    # Round-trip through JSON so what we return equals what load() returns.
    return json.loads(json.dumps(mask_values(meta), default=_json_default))


# -- frames -------------------------------------------------------------------


def _dtype_record(df: pd.DataFrame) -> dict[str, str]:
    return {str(col): str(dtype) for col, dtype in df.dtypes.items()}


def _restore_dtypes(df: pd.DataFrame, dtypes: Mapping[str, str]) -> pd.DataFrame:
    for col, dtype in dtypes.items():
        if col not in df.columns:
            continue
        try:
            if dtype.startswith("datetime64"):
                df[col] = pd.to_datetime(df[col], format="ISO8601")
                if "UTC" in dtype or "," in dtype:
                    tz = dtype.split(",", 1)[1].rstrip("]").strip()
                    df[col] = df[col].dt.tz_convert(tz)
            elif dtype.startswith("timedelta64"):
                df[col] = pd.to_timedelta(df[col])
            elif dtype == "object":
                df[col] = df[col].astype(object)
                df[col] = df[col].where(df[col].notna(), None)
            else:
                df[col] = df[col].astype(dtype)
        except (TypeError, ValueError):
            pass  # leave the column as CSV parsing produced it
    return df


def _write_frame(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f%z", na_rep=NA_REP)


def _read_frame(
    path: Path, dtypes: Mapping[str, str] | None, na_rep: str | None = None
) -> pd.DataFrame:
    try:
        if na_rep is None:  # format 1: missing values were written as empty fields
            df = pd.read_csv(path)
        else:  # empty fields are empty strings; only na_rep is missing
            df = pd.read_csv(path, keep_default_na=False, na_values=[na_rep])
    except pd.errors.EmptyDataError:
        return pd.DataFrame({col: pd.Series(dtype=object) for col in (dtypes or {})})
    except FileNotFoundError:
        raise PerfkitError(f"{path} is missing (the run's {METADATA_FILE} lists it)") from None
    except OSError as exc:
        raise PerfkitError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PerfkitError(f"{path} is not UTF-8 text (byte {exc.start}): it is corrupt") from None
    except pd.errors.ParserError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise PerfkitError(f"{path} is not a readable CSV file: {reason}") from None
    return _restore_dtypes(df, dtypes or {})


# -- save / load --------------------------------------------------------------


def _check_name(kind: str, name: str) -> None:
    if not name or name.startswith(".") or "/" in name or os.sep in name or name != name.strip():
        raise ConfigError(f"{kind} name {name!r} is not usable as a file name")


def save(
    frames: Mapping[str, pd.DataFrame],
    experiment: str,
    params: Mapping[str, Any] | None = None,
    server: _Describable | None = None,
    seed: int | None = None,
    out_dir: str | os.PathLike[str] = "data",
    *,
    started_at: dt.datetime | None = None,
    extra: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> Run:
    """Write ``frames`` and their metadata to ``<out_dir>/<experiment>/<run_id>/`` atomically.

    ``params`` are stored with every string value masked (DSN passwords).
    ``started_at`` defaults to when perfkit.results was first imported.
    """
    _check_name("experiment", experiment)
    for name, df in frames.items():
        _check_name("frame", name)
        if not isinstance(df, pd.DataFrame):
            raise ConfigError(f"frame {name!r} must be a pandas DataFrame, got {type(df).__name__}")
    run_id = run_id or new_run_id()
    _check_name("run id", run_id)
    meta = build_metadata(
        run_id=run_id,
        experiment=experiment,
        params=params,
        server=server,
        seed=seed,
        started_at=started_at or _IMPORTED_AT,
        finished_at=dt.datetime.now(dt.UTC),
        extra=extra,
    )
    meta["frames"] = {
        name: {
            "file": f"{name}.csv",
            "rows": len(df),
            "dtypes": _dtype_record(df),
            "na_rep": NA_REP,
        }
        for name, df in frames.items()
    }
    parent = Path(out_dir) / experiment
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / run_id
    if final.exists():
        raise PerfkitError(f"run directory {final} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{run_id}-", dir=parent))
    try:
        for name, df in frames.items():
            _write_frame(df, tmp / f"{name}.csv")
        meta_path = tmp / METADATA_FILE
        meta_path.write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
        for child in tmp.iterdir():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(parent)
    return Run(path=final, run_id=run_id, metadata=meta, frames=dict(frames))


def _fsync_dir(path: Path) -> None:
    """Make the rename durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_metadata(path: Path) -> dict[str, Any]:
    """A run's metadata; PerfkitError naming the file when it is unreadable or corrupt."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PerfkitError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PerfkitError(f"{path} is not UTF-8 text (byte {exc.start}): it is corrupt") from None
    except json.JSONDecodeError as exc:
        raise PerfkitError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): "
            "it is corrupt"
        ) from None
    if not isinstance(meta, dict):
        raise PerfkitError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    frames = meta.get("frames") or {}
    if not isinstance(frames, dict) or not all(
        isinstance(info, dict)
        and isinstance(info.get("file"), str)
        and Path(info["file"]).name == info["file"] not in ("", ".", "..")  # no path
        and isinstance(info.get("dtypes") or {}, dict)
        and all(isinstance(d, str) for d in (info.get("dtypes") or {}).values())
        and isinstance(info.get("na_rep"), str | None)
        for info in frames.values()
    ):
        raise PerfkitError(
            f'{path}: "frames" must map each frame\'s name to {{"file": ..., "dtypes": {{...}}}}'
            " (file: a name inside the run directory)"
        )
    return meta


def load(path: str | os.PathLike[str]) -> Run:
    """Load the run stored in directory ``path``."""
    path = Path(path)
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        raise PerfkitError(f"{path} is not a perfkit run (no {METADATA_FILE})")
    meta = _read_metadata(meta_path)
    frames: dict[str, pd.DataFrame] = {}
    for name, info in (meta.get("frames") or {}).items():
        frames[name] = _read_frame(path / info["file"], info.get("dtypes"), info.get("na_rep"))
    return Run(path=path, run_id=str(meta.get("run_id", path.name)), metadata=meta, frames=frames)


def run_dirs(experiment: str, out_dir: str | os.PathLike[str] = "data") -> list[Path]:
    """Complete run directories of ``experiment``, oldest first."""
    parent = Path(out_dir) / experiment
    if not parent.is_dir():
        return []
    dirs = [
        p
        for p in parent.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / METADATA_FILE).is_file()
    ]

    def key(p: Path) -> tuple[str, str]:
        try:
            meta = json.loads((p / METADATA_FILE).read_text())
        except (OSError, ValueError):
            meta = None
        finished = meta.get("finished_at") if isinstance(meta, dict) else None
        return (str(finished or ""), p.name)

    return sorted(dirs, key=key)


def latest(experiment: str, out_dir: str | os.PathLike[str] = "data") -> Run:
    """The most recently finished run of ``experiment``."""
    dirs = run_dirs(experiment, out_dir)
    if not dirs:
        raise PerfkitError(f"no runs of experiment {experiment!r} under {Path(out_dir)}")
    return load(dirs[-1])


def load_all(experiment: str, out_dir: str | os.PathLike[str] = "data") -> dict[str, pd.DataFrame]:
    """Every frame name -> the frames of all runs concatenated, with a ``run_id`` column."""
    merged: dict[str, list[pd.DataFrame]] = {}
    for path in run_dirs(experiment, out_dir):
        run = load(path)
        for name, df in run.frames.items():
            merged.setdefault(name, []).append(df.assign(run_id=run.run_id))
    return {name: pd.concat(dfs, ignore_index=True) for name, dfs in merged.items()}
