"""``verified``: a warm pool that hands a database out again when the server shows it unchanged.

Each database handed out by :class:`~perfkit.lifecycle.strategies.WarmPool`
costs a clone and a drop, even when the test only read. This strategy keeps
the warm pool and adds recycler threads (one per clone worker): when a test
releases its database (a queue put on the test's path, as before) a recycler

1. ends every session still connected to it and waits until each has exited,
   so their statistics are in shared memory
   (:func:`~perfkit.lifecycle.cleancheck.end_other_sessions`);
2. renames it (code under test caches connections per DSN, and the ones it
   kept were just ended), opens the connection the next test will get and
   reads the database's :class:`~perfkit.lifecycle.cleancheck.State` in one query;
3. compares it with the baseline read when the database was made ready. Equal:
   the database goes back to the ready queue (no clone, no drop). Only rows
   and sequence positions changed: it is reset in place
   (:mod:`perfkit.lifecycle.reset`) and goes back with a new baseline, while
   resets are not measured slower than clones (medians of the last 50).
   Anything else, or anything it could not read: the janitor drops it and the
   cloners make a new one, as the warm pool does.

With ``stable_dsn`` the first database a worker hands out becomes its home:
every later test of the worker gets it under the same name, checked and reset
on the test's path (:mod:`perfkit.lifecycle.stable`); the pool then only
serves a test that comes while the home is out.

The verdict comes from the server, never from the test. What it costs and
what it saw are recorded (``pool_reuse`` / ``pool_reset`` / ``pool_dirty`` events)
and shown in the plugin's summary line. Its blind spots are listed in
:mod:`perfkit.lifecycle.cleancheck`; migrations that make a database it
cannot check are refused before the first test (:mod:`perfkit.lifecycle.blindspots`).
"""

from __future__ import annotations

import hashlib
import queue
import statistics
import threading
from dataclasses import dataclass

import psycopg
from psycopg import sql

from perfkit.dsn import mask
from perfkit.lifecycle import blindspots
from perfkit.lifecycle import reset as resets
from perfkit.lifecycle.cleancheck import (
    RELATIONS_CHANGED,
    State,
    end_other_sessions,
    read_state,
    unchanged,
)
from perfkit.lifecycle.dbconnect import admin_connect, connect
from perfkit.lifecycle.stable import StableHome
from perfkit.lifecycle.strategies import Lease, WarmPool, _close_quietly, _Ready

__all__ = ["VerifiedPool"]

_STOP = object()
#: A parked database's comment: the digest of its state when it was parked.
PARKED_COMMENT = "perfkit verified "


def parked_digest(state: State) -> str:
    """What must not change while a database is parked (its name and comment may)."""
    kept = (state.relations, state.settings, state.stats_reset, state.server_started)
    return hashlib.sha256(repr(kept).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Baseline:
    """What a database looked like when it was made ready."""

    state: State
    relations: dict[int, resets.Relation]


def _read_baseline(conn: psycopg.Connection) -> _Baseline:
    return _Baseline(read_state(conn), resets.details(conn))


@dataclass(frozen=True)
class _Returned:
    dbname: str
    baseline: _Baseline


class VerifiedPool(WarmPool):
    """A warm pool that reuses a released database when the server shows it unchanged."""

    name = "verified"

    #: Resets measured before the cheaper path (reset or recreate) is chosen by cost.
    COST_SAMPLES = 5

    def setup(self) -> None:
        self._baselines: dict[str, _Baseline] = {}
        self._pristine: resets.Pristine | None = None
        self._can_reset = True
        self._reset_costs: list[float] = []
        self._clone_costs: list[float] = []
        self._closing = threading.Event()
        self._returned: queue.Queue[object] = queue.Queue()
        self._stable = self.session.settings.stable_dsn
        self._home: StableHome | None = None
        self._vetted = False  # blindspots: the first database is looked at before any test
        super().setup()
        # Held from here on: the session keeps its lock while it closes strategies, so a
        # recycler must not need the session's lock to hand a database to the janitor.
        self._drop = self.session.janitor.drop
        self._recyclers = [
            threading.Thread(target=self._recycle_loop, name=f"perfkit-recycler-{i}", daemon=True)
            for i in range(self.session.settings.clone_workers)
        ]
        for thread in self._recyclers:
            thread.start()

    def _ready(self, name: str) -> _Ready:
        """Connect to a new (or adopted) database and read its baseline on that connection."""
        dsn = self.session.dsn_for(name)
        conn = connect(dsn)
        try:
            baseline = _read_baseline(conn) if self._vetted else self._first_baseline(conn)
            if self._pristine is None and self._can_reset:
                self._pristine = self._read_pristine(conn)
        except BaseException:
            _close_quietly(conn)
            raise
        with self._books:
            self._baselines[name] = baseline
        if not self.preconnect:
            _close_quietly(conn)
            return _Ready(dbname=name, dsn=dsn, conn=None)
        return _Ready(dbname=name, dsn=dsn, conn=conn)

    def _read_pristine(self, conn: psycopg.Connection) -> resets.Pristine | None:
        """The seed rows, or None (and no resets from now on) when they cannot be copied out:
        a column type without binary output (some extensions' types). Changed rows are then
        recreated; the check does not need them."""
        try:
            return resets.read_pristine(conn)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            self._can_reset = False
            reason = mask(str(exc)).strip()
            self.session.record("reset_unavailable", 0.0, strategy=self.name, reason=reason)
            return None

    def _first_baseline(self, conn: psycopg.Connection) -> _Baseline:
        """The first database's baseline, after refusing migrations the check cannot see."""
        migrations = self.session.settings.migrations
        try:
            blindspots.refuse_unverifiable(conn, self.session.statements, migrations)
            baseline = _read_baseline(conn)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            raise blindspots.unreadable(exc, migrations) from exc
        self._vetted = True
        return baseline

    # -- stable DSN: one home database per worker ---------------------------------------

    @property
    def home(self) -> StableHome | None:
        """The worker's home database under a stable DSN (None before the first test)."""
        return self._home

    def target(self) -> int:
        """With a stable DSN: one database until the home exists, then only for waiting tests."""
        if not self._stable:
            return super().target()
        with self._books:
            if self._home is None:
                return max(
                    min(1, self.remaining if self.remaining is not None else 1), self.waiting
                )
            return self.waiting

    def acquire(self, test_id: str) -> Lease:
        home = self._home
        if not self._stable or (home is not None and home.leased):
            return super().acquire(test_id)
        if home is None:
            lease = super().acquire(test_id)
            with self._books:
                self._baselines.pop(lease.dbname, None)
            self._home = home = StableHome(self.session, lease.dbname, self._pristine)
        else:
            lease = Lease(
                strategy=self.name,
                test_id=test_id,
                dbname=home.name,
                server=self.server,
                dsn=home.dsn,
                conn=None,  # opened on first use (perfkit_db), never for a DSN-only test
            )
        home.leased = True
        lease.extra["stable"] = True
        return lease

    def _settle_home(self, lease: Lease, home: StableHome) -> None:
        _close_quietly(lease.opened)
        t0 = self.session.clock()
        try:
            event, why = home.settle()
        except BaseException:
            self._lose_home(home, drop=True)
            raise
        finally:
            home.leased = False
        fields = {"why": why} if why else {}
        if home.last_check:
            fields["check"] = home.last_check
        self.session.record(
            event,
            self.session.clock() - t0,
            strategy=self.name,
            dbname=home.name,
            stable=True,
            **fields,
        )

    def _lose_home(self, home: StableHome, *, drop: bool) -> None:
        home.close()
        self._home = None
        if drop:
            self.session.discard(home.name)
        self.wake.set()

    def release(self, lease: Lease) -> None:
        home = self._home
        if home is not None and lease.extra.get("stable") and lease.dbname == home.name:
            self._settle_home(lease, home)
            return
        _close_quietly(lease.opened)
        with self._books:
            baseline = self._baselines.pop(lease.dbname, None)
        # Not counted as in flight: the cloners keep the pool full meanwhile, so a test never
        # waits for a recycle (the pool may hold a few more than pool_size for a moment).
        if baseline is None:
            self.session.discard(lease.dbname)
            return
        self._returned.put(_Returned(lease.dbname, baseline))

    def forget(self, lease: Lease) -> None:
        home = self._home
        if home is not None and lease.extra.get("stable") and lease.dbname == home.name:
            self._lose_home(home, drop=False)  # kept for inspection; the next test gets a new home
        with self._books:
            self._baselines.pop(lease.dbname, None)
        super().forget(lease)

    # -- parking across runs (reuse): verified before it is adopted ----------------------

    def _before_park(self, admin: psycopg.Connection, dbname: str) -> bool:
        """Write the parked database's state digest into its comment (False: not clean)."""
        with self._books:
            baseline = self._baselines.pop(dbname, None)
        if baseline is None:
            return False
        with connect(self.session.dsn_for(dbname)) as conn:
            state = read_state(conn)
        if unchanged(baseline.state, state):
            return False
        admin.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(dbname), sql.Literal(PARKED_COMMENT + parked_digest(state))
            )
        )
        return True

    def _adoptable(self, name: str) -> bool:
        """Only if its state still matches the digest it was parked with (comment cleared)."""
        with connect(self.session.dsn_for(name)) as conn:
            state = read_state(conn)
        if state.comment != PARKED_COMMENT + parked_digest(state) or state.temporary:
            return False
        with self.session.admin_locked() as admin:
            admin.execute(sql.SQL("COMMENT ON DATABASE {} IS NULL").format(sql.Identifier(name)))
        return True

    # -- the recycler ------------------------------------------------------------------

    def _recycle_loop(self) -> None:
        admin: psycopg.Connection | None = None
        try:
            while True:
                item = self._returned.get()
                if item is _STOP:
                    self._returned.task_done()
                    return
                assert isinstance(item, _Returned)
                try:
                    if admin is None or admin.closed or admin.broken:
                        admin = admin_connect(self.session.admin_dsn)
                    self._recycle(admin, item)
                except BaseException as exc:  # the database is dropped; the next acquire says why
                    self._drop(item.dbname)
                    if not isinstance(exc, psycopg.Error):
                        self.error = exc
                finally:
                    self._returned.task_done()
        finally:
            if admin is not None:
                _close_quietly(admin)

    def _recycle(self, admin: psycopg.Connection, item: _Returned) -> None:
        t0 = self.session.clock()
        if self.stopping.is_set() or self._closing.is_set():
            self._drop(item.dbname)
            return
        lingering = end_other_sessions(admin, item.dbname)
        reasons = [f"{lingering} session(s) did not end"] if lingering else []
        conn: psycopg.Connection | None = None
        baseline = item.baseline
        event = "pool_reuse"
        name = item.dbname
        if not reasons:
            name = self._rename(admin, item.dbname)
            if name is None:
                name, reasons = item.dbname, ["a session came back before the rename"]
        if not reasons:
            conn = connect(self.session.dsn_for(name))
            reasons = unchanged(baseline.state, read_state(conn))
            t_reset = self.session.clock()
            if reasons == [RELATIONS_CHANGED] and self._reset(conn, baseline):
                baseline, reasons, event = _read_baseline(conn), [], "pool_reset"
                self._reset_costs.append(self.session.clock() - t_reset)
        seconds = self.session.clock() - t0
        if reasons:
            _close_quietly(conn)
            self._drop(name)
            self.session.record(
                "pool_dirty",
                seconds,
                strategy=self.name,
                dbname=name,
                why="; ".join(reasons),
            )
            return
        with self._books:
            self._baselines[name] = baseline
        if not self.preconnect:
            _close_quietly(conn)
            conn = None
        self.ready.put(_Ready(dbname=name, dsn=self.session.dsn_for(name), conn=conn))
        self.session.record(event, seconds, strategy=self.name, dbname=name)

    def _rename(self, admin: psycopg.Connection, old: str) -> str | None:
        """Give a returned database a new name (None if someone connected to it meanwhile).

        Code under test often caches a connection or engine per DSN; the sessions
        it kept were just ended, so handing out the same name would give the next
        test a cached, dead connection. A new name costs one catalog update.
        """
        new = self.session.namer.name("w")
        try:
            admin.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(old), sql.Identifier(new)
                )
            )
        except psycopg.errors.ObjectInUse:
            return None
        self.session.own(new)
        self.session.disown(old)
        return new

    def _reset(self, conn: psycopg.Connection, baseline: _Baseline) -> bool:
        """Reset a rows-only change in place when that is possible and pays; True if done."""
        if not self._can_reset or self._pristine is None or not self._reset_pays():
            return False
        plan = resets.plan_reset(baseline.relations, resets.details(conn))
        if plan is None:
            return False
        try:
            resets.reset(conn, plan, self._pristine)
        except psycopg.errors.InsufficientPrivilege:
            conn.rollback()
            self._can_reset = False  # not a superuser: recreate from now on
            return False
        return True

    def _reset_pays(self) -> bool:
        """Reset while it has not been measured slower than a clone (medians of the last 50).

        Both are timed the same way: a reset from its first statement to its new
        baseline, a clone from ``CREATE DATABASE`` to its connection and baseline
        (the clone's drop, also saved by a reset, is not counted: in doubt, clone).
        """
        resets_, clones = self._reset_costs[-50:], self._clone_costs[-50:]
        if len(resets_) < self.COST_SAMPLES or len(clones) < self.COST_SAMPLES:
            return True
        return statistics.median(resets_) <= statistics.median(clones)

    def _clone(self, admin: psycopg.Connection) -> None:
        t0 = self.session.clock()
        super()._clone(admin)
        self._clone_costs.append(self.session.clock() - t0)

    def _stop_recycler(self) -> None:
        for _ in self._recyclers:
            self._returned.put(_STOP)
        for thread in self._recyclers:
            thread.join(timeout=60)

    def _close_home(self) -> None:
        home = self._home
        if home is not None:
            self._lose_home(home, drop=True)

    def abandon(self) -> None:
        if self._home is not None:
            self._home.close()
            self._home = None
        self.stopping.set()
        self._stop_recycler()
        super().abandon()

    def close(self) -> None:
        self._closing.set()  # databases still coming back are dropped, not checked
        self._close_home()
        self._stop_recycler()
        super().close()
