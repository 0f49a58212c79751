"""Exhaustive parameter lists cut to a sample for the default run: the rest are marked ``slow``.

Every value keeps its own test id, so ``pytest -m slow`` (a step of ``.ci/run``) runs exactly the
cases the default run leaves out, and the two together run every case.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest


def sampled(values: Iterable[Any], keep: Sequence[Any]) -> list[Any]:
    """``values`` in order, those not in ``keep`` marked slow; ``keep`` must name real values."""
    values = list(values)
    unknown = [k for k in keep if k not in values]
    assert not unknown, f"the sample names values that are not in the list: {unknown}"
    return [v if v in keep else pytest.param(v, marks=pytest.mark.slow) for v in values]
