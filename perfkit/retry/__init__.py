"""Connection retry: strategies, the retrying connect, worst-case analysis and experiments.

- :mod:`perfkit.retry.strategies`: pure, seedable delay schedules and the
  ``STRATEGIES`` registry (``get_strategy(name)``);
- :mod:`perfkit.retry.token_bucket`: a thread-safe retry token bucket shared by many clients;
- :mod:`perfkit.retry.planner`: stop conditions and the deadline, as a pure state machine;
- :mod:`perfkit.retry.connect`: ``connect_with_retry`` / ``async_connect_with_retry``
  returning the connection and a trace of every attempt;
- :mod:`perfkit.retry.analysis`: worst-case totals, exact bounds and sampled spread, and
  the lab's frames computed from its runs (headlines, model vs real, herd vs simulation);
- :mod:`perfkit.retry.tenacity_adapter`: ``as_tenacity_wait`` / ``as_tenacity_stop``;
- :mod:`perfkit.retry.probe`: readiness probe, backend sampler, server-log attempt counts;
- :mod:`perfkit.retry.experiments`: cold start, outage and hang on a real server;
- :mod:`perfkit.retry.model`: cold-start overshoot predicted from measured ready times
  (``predict``) and a schedule fitted to them (``fit_schedule``);
- :mod:`perfkit.retry.whatif`: any schedule predicted from a saved run's ready times (the
  notebook's what-if section: sliders, or a static table and figure);
- :mod:`perfkit.retry.readiness`: ``ready_time_samples``, boots without retrying clients;
- :mod:`perfkit.retry.herd`: N clients reconnecting at once, and the simulation's calibration;
- :mod:`perfkit.retry.bigherd`: 1,000 connected clients losing the server, vs the simulation;
  :mod:`perfkit.retry.herdproc` runs its clients on one event loop or over client processes;
- :mod:`perfkit.retry.contention`: the herd model whose server and clients contend for CPU
  (``simulate_contended``, ``ContentionSettings``, ``RetryBudget``);
- :mod:`perfkit.retry.fleet`: ``recommend_for_fleet``, the backoff (jitter, delays, first retry,
  shared retry budget) that reconnects N clients soonest in the contention model;
- :mod:`perfkit.retry.simsweep`: ``simulate_grid``, strategies x fleet sizes x seeds, here or
  on a dask.distributed cluster;
- :mod:`perfkit.retry.setupcost`: ``measure_setup_costs``, the CPU and time one connection costs
  (the contention model's constants, measured on an idle server);
- :mod:`perfkit.retry.validation`: real vs simulated herds over repeats (``agreement``), the
  largest N where they agree, ``run_validation`` and ``contended_simulate`` (the contention
  model of one real herd); ``python -m perfkit.retry.validation`` runs the whole check;
- :mod:`perfkit.retry.fleetrun`: ``run_fleet_check``, the fleet recommendation on real herds
  next to the named strategies (``python -m perfkit.retry.fleetrun``);
- :mod:`perfkit.retry.lab` (Params, ``LAB``), :mod:`perfkit.retry.measure` (the runs against
  servers), :mod:`perfkit.retry.conclusions` and :mod:`perfkit.retry.plots`: the notebook's lab.

The names in ``__all__`` load on first use, so ``from perfkit.retry import connect_with_retry``
loads psycopg but neither numpy nor pandas (a test suite's light install has neither).
"""

from perfkit._exports import lazy

_HOMES = {
    "RetryError": "perfkit.errors",
    "async_connect_with_retry": "perfkit.retry.connect",
    "connect_with_retry": "perfkit.retry.connect",
    "ContendedResult": "perfkit.retry.contention",
    "ContentionSettings": "perfkit.retry.contention",
    "RetryBudget": "perfkit.retry.contention",
    "simulate_contended": "perfkit.retry.contention",
    "AttemptCosts": "perfkit.retry.model",
    "Fit": "perfkit.retry.model",
    "Prediction": "perfkit.retry.model",
    "fit": "perfkit.retry.model",
    "fit_schedule": "perfkit.retry.model",
    "predict": "perfkit.retry.model",
    "GiveUp": "perfkit.retry.planner",
    "RetryPlanner": "perfkit.retry.planner",
    "ready_time_samples": "perfkit.retry.readiness",
    "SimResult": "perfkit.retry.simulate",
    "SimSettings": "perfkit.retry.simulate",
    "simulate": "perfkit.retry.simulate",
    "simulate_grid": "perfkit.retry.simsweep",
    "FleetRecommendation": "perfkit.retry.fleet",
    "recommend_for_fleet": "perfkit.retry.fleet",
    "SetupCosts": "perfkit.retry.setupcost",
    "measure_setup_costs": "perfkit.retry.setupcost",
    "STRATEGIES": "perfkit.retry.strategies",
    "AdditiveJitter": "perfkit.retry.strategies",
    "CappedExponential": "perfkit.retry.strategies",
    "DecorrelatedJitter": "perfkit.retry.strategies",
    "DelayedExponential": "perfkit.retry.strategies",
    "FirstRetryDelay": "perfkit.retry.strategies",
    "EqualJitter": "perfkit.retry.strategies",
    "FixedDelay": "perfkit.retry.strategies",
    "FullJitter": "perfkit.retry.strategies",
    "GrpcBackoff": "perfkit.retry.strategies",
    "PollyDecorrelatedJitterV2": "perfkit.retry.strategies",
    "Strategy": "perfkit.retry.strategies",
    "get_strategy": "perfkit.retry.strategies",
    "strategy_name": "perfkit.retry.strategies",
    "RetryTokenBucket": "perfkit.retry.token_bucket",
    "agreement": "perfkit.retry.validation",
    "largest_agreeing_n": "perfkit.retry.validation",
    "run_validation": "perfkit.retry.validation",
    "contended_simulate": "perfkit.retry.validation",
    "run_fleet_check": "perfkit.retry.fleetrun",
    "Attempt": "perfkit.retry.trace",
    "Trace": "perfkit.retry.trace",
}

__all__ = list(_HOMES)

__getattr__, __dir__ = lazy(__name__, _HOMES, globals())
