"""The search: the most accurate EdgeViTs within a latency (and energy) budget on one device.

One driver process owns the Optuna study and talks to it by ask/tell; scoring runs elsewhere.

- **Objectives**: the accuracy score up (:func:`predictors.accuracy.load_accuracy_model`), predicted
  latency down (:func:`predictors.latency.load_device_model`), optionally predicted energy down.
  Budgets are *constraints*, not objectives: each trial stores its violations (predicted minus
  budget) in the user attribute ``constraints`` and carries them as Optuna constraints
  (``Trial.set_constraint`` on Optuna >= 5; a ``constraints_func`` reading the user attribute
  before that), so infeasible candidates are ranked by how far they miss (constrained domination).
- **Samplers**: NSGA-II (default), TPE (multivariate, grouped, constant liar), GP, random; the
  ``seed`` seeds the sampler.
- **Scale-out**: the driver asks ``workers`` trials, scores the distinct new candidates among them
  as Ray tasks (each worker process loads the models once, from one object in the object store),
  then tells every trial *in ask order*. Completion order therefore never changes a result: the same
  seed and the same ``workers`` give the same trials, with Ray or without. The driver is the only
  writer of the storage, which keeps SQLite safe; a PostgreSQL/MySQL URL works the same way and can
  be shared by several drivers (``study_name``).
- **Duplicates**: a candidate is its ``arch_id``. An asked trial whose candidate was scored before
  (earlier in the run, earlier in the same batch, or before a resume) is told the stored values and
  marked ``duplicate_of``; it is never scored again.
- **Resume**: the run directory holds the study and the settings (``command.json``). Resuming fails
  the trials a kill left ``RUNNING`` (a ``FAIL`` without an ``error``), enqueues their parameters again, and
  continues until ``n_trials`` trials have finished; interrupted trials do not count.
- **Measurement in the loop** (``measure_top_k``): the best feasible candidates are measured on the
  device through the farm and stored. The latency model is then *refitted*: a device whose model
  was trained on its own measurements (``kind == "measured"``, e.g. ``host``) is retrained on the
  store, which now holds the new points where they matter most; a device whose model rests on
  other data (nn-Meter blocks, few-shot) gets a run-level scale correction, the geometric mean of
  measured / predicted over the measured candidates, because a handful of points supports one
  number and nothing more (``nas farm calibrate`` builds a full model). Every candidate's latency is
  re-predicted with the refitted model; a measured latency overrides any prediction, so a winner
  whose measured latency breaks the budget is never reported as the winner; an unmeasured new
  winner is measured in turn (at most ``measure_top_k`` extra measurements).

Outputs in the run directory (each written atomically; all regenerated at the end and on resume):
``command.json``, ``journal.log`` (the study), ``candidates.csv``/``.json``, ``pareto.json``, ``best.json``,
``pareto.png``, ``report.md``, and ``measured.json`` when measuring.
"""
from __future__ import annotations

from .config import DEFAULT_TRIALS, OBJECTIVES, SAMPLERS, SearchConfig, new_run_id
from .driver import resume_search, run_search
from .outputs import candidate_row, plot_pareto, report_markdown, write_outputs
from .pareto import hypervolume_2d, pareto_mask
from .results import Candidate, SearchProgress, SearchResult
from .scoring import Scorer

__all__ = [
    "OBJECTIVES", "SAMPLERS", "DEFAULT_TRIALS", "SearchConfig", "Candidate", "SearchProgress", "SearchResult",
    "Scorer", "run_search", "resume_search", "pareto_mask", "hypervolume_2d", "new_run_id",
    "write_outputs", "plot_pareto", "report_markdown", "candidate_row",
]
