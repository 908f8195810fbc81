"""Quiet by default: Ray, Tune and Train log at WARNING, and the known harmless Ray lines are dropped.

Three mechanisms, because Ray's noise comes from three places:

* Python log records, in the driver and in every Ray worker process (trial actors, the Train
  controller and workers, the placement-group cleaner): :func:`quiet_ray` sets the Ray loggers to
  WARNING and puts a :class:`logging.Filter` on each logger that emits one of :data:`LOG_DROPS`.
  The filter sits on the *emitting* logger, not on ``ray.train``: Ray Train re-runs
  ``logging.config.dictConfig`` for ``ray.train`` in each controller and worker, which replaces that
  logger's handlers and level but leaves other loggers alone. Workers run it through the job's
  ``worker_process_setup_hook`` (see :func:`services.cluster.connect`).
* Raw lines that Ray's C++ core worker writes to a worker's stderr, which the driver re-prints
  (``log_to_driver``): no Python filter sees them; :func:`filter_worker_stream` drops
  :data:`STREAM_DROPS` in the driver's printer.
* Python's unraisable-exception report of the ``SystemExit`` Ray raises in a worker it stops
  (:func:`is_termination_noise`): :func:`drop_termination_noise` (workers) and :func:`quiet_exit`.
  Likewise Python warnings Ray's own code raises in its workers (:data:`WARNING_DROPS`,
  :func:`drop_ray_warnings`).

``verbose=True`` leaves everything as Ray has it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass

from services import _private_api as private

RAY_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.data", "ray.air", "ray.util")


@dataclass(frozen=True)
class Drop:
    """One harmless Ray line: who emits it, how it starts, and why dropping it hides nothing."""

    where: str   # the emitting logger (LOG_DROPS; a path ending in .py: Ray names that logger by the
                 # file's absolute path) or "stderr of a Ray worker" (STREAM_DROPS)
    starts: str  # LOG_DROPS: the message's start; STREAM_DROPS: a fragment of the line
    why: str


LOG_DROPS = (
    Drop(private.TOKEN_AUTH_LOGGER,
         "Token authentication is enabled for this Ray cluster",
         "Ray >= 2.59 warns at every start of a local Ray that it turned token authentication on by "
         "default: that is the secure default, nothing to act on (the warning that auth is *disabled* is kept)"),
    Drop(private.TRAIN_REPORT_LOGGER_FILE,   # Ray names this logger by the file's path (__file__)
         "Reporting training result ",
         "Ray Train logs every ray.train.report at INFO with the whole TrainingReport repr (metrics and "
         "checkpoint, >1,000 characters an epoch); the CLI prints its own line per trial result"),
    Drop(private.PLACEMENT_GROUP_CALLBACK_LOGGER,
         "Failed to stop PlacementGroupCleaner gracefully",
         "the Train controller waits for the cleaner's stop() as long as stop() waits for the cleaner's "
         "monitor thread, so it times out first (GetTimeoutError, ray-project/ray PR #62516); the cleaner "
         "still exits by itself once the controller is gone, and the placement group is removed either way"),
)

STREAM_DROPS = (
    Drop("stderr of a Ray worker",
         "has constructor arguments in the object store and max_restarts > 0",
         "Ray Train creates its PreemptionWatcher actor with max_restarts=-1 and constructor arguments held "
         "in the object store; Ray's C++ core worker (core_worker.cc) logs, at ERROR, for every Train worker "
         "group, that a restart could fail if those arguments were lost. The watcher only watches for node "
         "drains: a failed restart of it changes nothing in training"),
)

# A warning a Ray worker logs with its whole traceback: the warning's line, then the traceback through its
# exception line, are dropped (:func:`keep_lines`).
TRACEBACK_DROPS = (
    Drop("stderr of Ray Train's controller (train/v2/_internal/execution/scaling_policy/"
         "autoscaling_coordinator_client.py)",
         "Failed to send resource request for ",
         "the Train controller asks the autoscaling coordinator for its workers' resources with a short timeout and, "
         "when the machine is too busy to answer in time, logs this warning with the GetTimeoutError's traceback "
         "(its own text: safe to ignore when transient); it asks again at its next poll, and a request that never "
         "goes through shows as a trial that does not start"),
)

WARNING_DROPS = (
    Drop("warnings.warn in a Ray worker",
         "`ExecutionOptions.exclude_resources` is deprecated",
         "with RAY_TRAIN_ENABLE_STATE_TRACKING=1 (services/cluster.py turns it on for the dashboard's Train "
         "runs), Ray Train's own state callback builds Ray Data ExecutionOptions through the deprecated "
         "setter in every Train controller; nothing of ours calls it (Ray 2.60, execution_options.py)"),
)


def drop_ray_warnings() -> None:
    """Ignore the Python warnings of :data:`WARNING_DROPS` in this process (a worker's setup hook)."""
    import re
    import warnings

    for drop in WARNING_DROPS:
        warnings.filterwarnings("ignore", message=re.escape(drop.starts))


def emitter(drop: Drop) -> logging.Logger:
    """The logger that emits ``drop`` (a ``.py`` path is resolved inside the installed Ray)."""
    if drop.where.endswith(".py"):
        import ray

        return logging.getLogger(os.path.join(os.path.dirname(ray.__file__), *drop.where.split("/")[1:]))
    return logging.getLogger(drop.where)


class DropFilter(logging.Filter):
    """``logging.Filter`` dropping the records of one :class:`Drop` (message start match)."""

    def __init__(self, drop: Drop):
        super().__init__()
        self.drop = drop

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.drop.starts)


_installed: list[tuple[logging.Logger, logging.Filter]] = []
_levels: dict[str, int] = {}


def quiet_ray(verbose: bool) -> None:
    """Ray/Tune/Train loggers to WARNING and the :data:`LOG_DROPS` filters on, unless ``verbose``
    (which undoes a previous quiet call). Idempotent; call it in the driver before ``ray.init`` and in
    every worker process (``worker_process_setup_hook``)."""
    if verbose:
        for logger, f in _installed:
            logger.removeFilter(f)
        _installed.clear()
        for name, level in _levels.items():
            logging.getLogger(name).setLevel(level)
        _levels.clear()
        return
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        _levels.setdefault(name, logger.level)
        logger.setLevel(logging.WARNING)
    for drop in LOG_DROPS:
        logger = emitter(drop)
        if not any(isinstance(f, DropFilter) and f.drop == drop for f in logger.filters):
            f = DropFilter(drop)
            logger.addFilter(f)
            _installed.append((logger, f))


def keep_line(line: str) -> bool:
    """False for a worker stderr line that is one of :data:`STREAM_DROPS`."""
    return not any(d.starts in line for d in STREAM_DROPS)


def keep_lines(lines: list[str], state: dict) -> list[str]:
    """``lines`` of one worker without :data:`STREAM_DROPS` and without a :data:`TRACEBACK_DROPS` warning and the
    traceback after it (``state`` carries an unfinished traceback over to the worker's next batch)."""
    out = []
    for line in lines:
        if any(d.starts in line for d in TRACEBACK_DROPS):
            state["skip"] = "warning"
        elif state.get("skip") == "warning" and line.startswith("Traceback"):
            state["skip"] = "traceback"
        elif state.get("skip") == "traceback" and line.startswith(" "):
            pass
        elif state.get("skip") == "traceback":   # the exception's own line ends the traceback
            state["skip"] = None
        else:
            state["skip"] = None
            if keep_line(line):
                out.append(line)
    return out


def filter_worker_stream() -> bool:
    """Drop :data:`STREAM_DROPS` from the worker output the driver prints (``log_to_driver``).

    Wraps the printer Ray registers in ``ray.init`` (Ray private API, fenced in
    ``services._private_api.wrap_worker_printer``); call after ``ray.init``. Idempotent. Returns whether
    the printer was found (False if a Ray release renames it)."""

    def wrap(handle):
        if getattr(handle, "robustloss_filtered", False):
            return handle

        def filtered(data, _print=handle, _state={}):
            lines = keep_lines(data.get("lines", []), _state.setdefault(data.get("pid"), {}))
            if lines:
                _print({**data, "lines": lines})

        filtered.robustloss_filtered = True
        return filtered

    return private.wrap_worker_printer(wrap)


def is_termination_noise(unraisable) -> bool:
    """Python's ``Exception ignored in: <function WeakSet.__init__.<locals>._remove ...>`` report of a
    ``SystemExit`` that Ray raised to stop the process.

    Cause: a Ray worker's SIGTERM handler (``Worker.main_loop`` in ``ray/_private/worker.py``) raises
    ``SystemExit(1)`` tagged ``ray_terminate_msg`` wherever the main thread is; Ray SIGTERMs workers it
    stops (Train worker groups at the end of a run, trial actors, idle workers). When the signal lands
    while the garbage collector runs a WeakSet callback (torch and threading keep WeakSets), Python
    cannot raise from the callback and prints it as unraisable instead. Nothing failed: the process was
    being stopped, and Ray force-kills a worker still alive ``kill_worker_timeout_milliseconds`` later."""
    obj = getattr(unraisable, "object", None)
    return (isinstance(unraisable.exc_value, SystemExit)
            and hasattr(unraisable.exc_value, "ray_terminate_msg")
            and getattr(obj, "__qualname__", "").startswith("WeakSet."))


def _filtering(previous):
    def hook(unraisable):
        if not is_termination_noise(unraisable):
            previous(unraisable)

    hook.robustloss_filtered = True
    return hook


def drop_termination_noise() -> None:
    """Drop :func:`is_termination_noise` reports in this process from now on (every other unraisable
    exception is reported as before). Idempotent; the worker setup hook calls it."""
    if not getattr(sys.unraisablehook, "robustloss_filtered", False):
        sys.unraisablehook = _filtering(sys.unraisablehook)


@contextlib.contextmanager
def quiet_exit(verbose: bool = False):
    """Drop :func:`is_termination_noise` reports within the block (e.g. the CLI's ``main``); the
    previous ``sys.unraisablehook`` is back afterwards. ``verbose``: change nothing."""
    previous = sys.unraisablehook
    if not verbose:
        sys.unraisablehook = _filtering(previous)
    try:
        yield
    finally:
        sys.unraisablehook = previous
