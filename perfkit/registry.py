"""The labs perfkit ships, found by name or notebook: what report, compare and sweep iterate.

Adding a lab means adding its module's ``LAB`` to :data:`LABS` (see ARCHITECTURE.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from perfkit.errors import ConfigError
from perfkit.lab import Lab
from perfkit.lifecycle.lab import LAB as LIFECYCLE
from perfkit.pgbouncer.lab import LAB as PGBOUNCER
from perfkit.pool.lab import LAB as POOL
from perfkit.retry.lab import LAB as RETRY
from perfkit.streaming.lab import LAB as STREAMING

if TYPE_CHECKING:
    from perfkit.headlines import HeadlineSpec

#: Every lab, in report order.
LABS: tuple[Lab, ...] = (RETRY, POOL, LIFECYCLE, STREAMING, PGBOUNCER)


def get(name: str) -> Lab:
    """The lab whose experiment is ``name``; ConfigError listing the known ones."""
    for lab in LABS:
        if lab.name == name:
            return lab
    known = ", ".join(lab.name for lab in LABS)
    raise ConfigError(f"unknown lab {name!r}; the labs are: {known}")


def find(name: str) -> Lab | None:
    """The lab whose experiment is ``name``, or None."""
    return next((lab for lab in LABS if lab.name == name), None)


def for_notebook(path: str | os.PathLike[str]) -> Lab | None:
    """The lab a notebook file belongs to (by its file name), or None."""
    name = Path(path).name
    return next((lab for lab in LABS if lab.notebook == name), None)


def headline_specs() -> dict[str, HeadlineSpec]:
    """Every lab's headline metrics and their :class:`~perfkit.headlines.HeadlineSpec`
    (statistic, better direction), by metric."""
    out: dict[str, HeadlineSpec] = {}
    for lab in LABS:
        out.update(lab.headline_specs())
    return out
