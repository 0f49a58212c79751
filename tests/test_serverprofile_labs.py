"""The labs' views of the server profile (pure): which rows they plot and what they say."""

from __future__ import annotations

import pandas as pd
import pytest

from perfkit.errors import ConfigError
from perfkit.pgbouncer import timeprofile as bouncer_profile
from perfkit.pool import timeprofile as pool_profile
from perfkit.pool.lab import Params
from perfkit.retry import timeprofile as herd_profile
from perfkit.serverprofile.sampler import Profile

CB = "client backend"


def _rows(variant: str, counts: dict, samples: int = 50, **tags: object) -> list[dict]:
    return Profile(counts, samples, 0, 0.5, 0.0).rows(variant=variant, **tags)


def test_pool_profile_is_read_at_the_largest_worker_count_sizes_in_order() -> None:
    busy = {("", "", "active", CB): 10, ("LWLock", "WALWrite", "active", CB): 30}
    rows = []
    for workers in (4, 16):
        for variant in ("16", "2", "no pool"):
            rows += _rows(variant, busy, workers=workers)
    wp, order, top = pool_profile.at_top_workers({"wait_profile": pd.DataFrame(rows)})
    assert top == 16
    assert set(wp["workers"]) == {16}
    assert order == ["2", "16", "no pool"]


def test_pool_sentence_names_the_wait_and_the_throughput_change() -> None:
    waits = {("", "", "active", CB): 40, ("LWLock", "WALWrite", "active", CB): 60}
    rows = _rows("1", {("", "", "active", CB): 40}, workers=16) + _rows("8", waits, workers=16)
    runs = pd.DataFrame(
        {
            "experiment": ["size", "size"],
            "workers": [16, 16],
            "max_size": [1, 8],
            "pooled": [True, True],
            "throughput_rps": [1000.0, 1020.0],
        }
    )
    text = pool_profile.sentence({"wait_profile": pd.DataFrame(rows), "runs": runs})
    assert text is not None
    assert "60 %" in text and "`LWLock:WALWrite`" in text and "n = 50 samples" in text
    assert "added waiting, not throughput" in text


def test_negative_sampler_pairs_fail_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match="sampler_pairs"):
        Params(quick=True, sampler_pairs=-1)


def test_pgbouncer_figure_keeps_the_pool_part_at_its_largest_worker_count_and_the_modes() -> None:
    busy = {("", "", "active", CB): 5}
    rows = _rows("direct", busy, part="pool", workers=4)
    rows += _rows("direct", busy, part="pool", workers=16)
    rows += _rows("transaction", busy, part="pool", workers=16)
    rows += _rows("session", busy, part="modes", workers=20)
    _, order = bouncer_profile.figure_profile(pd.DataFrame(rows))
    assert order == ["pool: direct", "pool: transaction", "modes: session"]


def test_herd_sentence_counts_idle_connections_too() -> None:
    rows = _rows("naive", {("Client", "ClientRead", "idle", CB): 400}, n_clients=50, rep=0)
    rows += _rows("naive", {("Client", "ClientRead", "idle", CB): 100}, n_clients=10, rep=0)
    text = herd_profile.sentence({"wait_profile": pd.DataFrame(rows)})
    assert text is not None
    assert "herd of 50" in text and "`idle`" in text
