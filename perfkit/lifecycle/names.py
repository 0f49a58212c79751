"""Database names that never clash: per session token, per xdist worker, per purpose."""

from __future__ import annotations

import itertools
import os
import re
import secrets

PREFIX = "pk"
#: Names on reused servers: the template and parked warm-pool databases carry the
#: migrations' hash; kept databases of failed tests carry the test's name.
TEMPLATE_PREFIX = f"{PREFIX}_tpl_"
READY_PREFIX = f"{PREFIX}_ready_"
FAILED_PREFIX = f"{PREFIX}_failed_"
MAX_IDENTIFIER = 63
_UNSAFE = re.compile(r"[^a-z0-9_]")


def worker_id(environ: dict[str, str] | None = None) -> str:
    """The pytest-xdist worker id (``gw0``, ``gw1``...) or ``main`` outside xdist."""
    env = os.environ if environ is None else environ
    return env.get("PYTEST_XDIST_WORKER") or "main"


class Namer:
    """Hands out database names ``pk_<token>_<worker>_<purpose><n>``.

    The random token keeps concurrent runs against one (external) server apart;
    the worker id keeps xdist workers apart.
    """

    def __init__(self, worker: str, token: str | None = None) -> None:
        self.worker = _UNSAFE.sub("_", worker.lower())
        self.token = token or secrets.token_hex(3)
        self._counter = itertools.count(1)

    @property
    def prefix(self) -> str:
        return f"{PREFIX}_{self.token}_{self.worker}_"

    def name(self, purpose: str, *, numbered: bool = True) -> str:
        suffix = f"{purpose}{next(self._counter)}" if numbered else purpose
        name = self.prefix + _UNSAFE.sub("_", suffix.lower())
        return name[:MAX_IDENTIFIER]

    def owns(self, dbname: str) -> bool:
        return dbname.startswith(self.prefix)
