"""Search algorithms and trial schedulers of a ``--mode grid`` sweep: one registry each.

A search (``STRATEGIES``, ``--search``) gives Tune its searcher, how many trials to start, which
hyperparameters vary, and how a ``--resume`` continues it:

* ``grid``   — every configuration of the grid file, one trial each (``TrialListSearcher``); a resume keeps
  the finished trials and continues the others from their checkpoints (``services.salvage``);
* ``optuna`` — Optuna's TPE over :class:`OptunaSpace` (the grid's ranges), ``--num-samples`` trials;
* ``random`` — random search (Optuna's ``RandomSampler``) over the same space and budget.

The two sampling searches keep their study in ``<storage>/<name>/optuna.journal`` (or ``--optuna-storage``):
a resume continues the study, keeps its finished trials and runs its interrupted ones again from their
newest checkpoints. A scheduler (``SCHEDULERS``, ``--scheduler``) decides when a trial stops: ``none``, or
``asha`` (Tune's ASHA, :class:`Asha`); trials checkpoint at its rungs, so a stopped trial's result is stored.
A trial ASHA stopped stays stopped on ``--resume`` (recorded in ``<name>/stopped.json``; the sampling
searches' study has it as PRUNED as well).

Adding a search: one :class:`Strategy` subclass and one line in ``STRATEGIES``.
"""
from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, field

from services import storage as st

OPTUNA_JOURNAL = "optuna.journal"
STOPPED = "stopped.json"   # keys of the trials a scheduler stopped early


def selection_metric(train: dict) -> str:
    """What searchers and schedulers optimise: noisy-validation top-1 (test top-1 only without a validation split)."""
    return "val_top1" if float(train.get("val_fraction", 0.0) or 0.0) > 0 else "test_top1"


# ----------------------------------------------------------------------------- schedulers
@dataclass(frozen=True)
class Asha:
    """Tune's ASHAScheduler: rungs r_k = grace · η^k; None: the defaults (grace = epochs // 4, η = 3)."""

    reduction_factor: float | None = None
    grace_period: int | None = None
    label = "ASHA"
    uses_metric = True

    def resolved(self, epochs: int) -> tuple[float, int]:
        return float(self.reduction_factor or 3), int(self.grace_period or max(1, epochs // 4))

    def rungs(self, epochs: int) -> tuple[int, ...]:
        """Tune's ``_Bracket`` milestones r_k = grace · η^k for k < ⌊log(max_t / grace) / log η⌋ + 1, those
        before the last epoch (a trial at max_t is finished either way): where a trial may be stopped, so
        where it checkpoints."""
        eta, grace = self.resolved(epochs)
        n = int(math.log(epochs / grace) / math.log(eta) + 1)
        return tuple(r for r in sorted(int(grace * eta ** k) for k in range(n)) if r < epochs)

    def tune(self, epochs: int):
        from ray.tune.schedulers import ASHAScheduler

        eta, grace = self.resolved(epochs)
        return ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=grace, reduction_factor=eta)


class NoScheduler:
    """Every trial runs all its epochs."""

    label = None
    uses_metric = False

    def rungs(self, epochs: int) -> tuple[int, ...]:
        return ()

    def tune(self, epochs: int):
        return None


SCHEDULERS = {"none": NoScheduler(), "asha": Asha()}


# ----------------------------------------------------------------------------- the search space
class OptunaSpace:
    """Define-by-run Optuna space over the same ranges as the grid: loss (categorical), log-uniform
    learning rate over the grid's span, each parameter uniform over its grid's span (categorical if
    the grid has one value or non-numeric values); ``logit_bias`` is searched like a loss parameter.
    A class, not a closure: it is pickled with the searcher."""

    def __init__(self, losses: list[str], grids: dict, lrs: list[float]):
        self.losses, self.grids, self.lrs = list(losses), grids, list(lrs)

    def keys(self) -> list[str]:
        """Every hyperparameter a trial of this space can have: loss, lr and each loss's own."""
        return sorted({"loss", "lr"} | {k for loss in self.losses for k in (self.grids.get(loss) or {})})

    @staticmethod
    def numeric(values) -> bool:
        """Whether a grid's values span a range (else: a categorical choice)."""
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(set(values)) > 1

    def distributions(self, loss: str) -> dict:
        """The Optuna distributions of one loss's hyperparameters: lr, then its grid's keys (sorted)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        out = {"lr": FloatDistribution(min(self.lrs), max(self.lrs), log=True)}
        for name, values in sorted((self.grids.get(loss) or {}).items()):
            out[name] = (FloatDistribution(float(min(values)), float(max(values))) if self.numeric(values)
                         else CategoricalDistribution(list(values)))
        return out

    def __call__(self, trial):
        loss = trial.suggest_categorical("loss", self.losses)
        for name, d in self.distributions(loss).items():
            if hasattr(d, "choices"):
                trial.suggest_categorical(name, list(d.choices))
            else:
                trial.suggest_float(name, d.low, d.high, log=d.log)
        return None


# ----------------------------------------------------------------------------- one Tune run's inputs
@dataclass
class Sweep:
    """What a search needs: the experiment, its trial list (the grid) and its space."""

    storage: st.Storage
    name: str
    fixed: object                 # services.spec.Fixed
    specs: list                   # the grid's TrialSpecs
    space: OptunaSpace | None = None
    num_samples: int | None = None
    optuna_url: str | None = None
    scheduler: object = field(default_factory=NoScheduler)
    sampler_offset: int = 0       # trials a resumed study already holds: its sampler is seeded past them
    study: object = None          # the Optuna storage (study_storage), opened once

    @property
    def epochs(self) -> int:
        return int(self.fixed.train["epochs"])

    def resume_from(self, spec) -> None:
        if spec.resume_from:
            self.fixed.extras.setdefault(spec.key, {})["resume_from"] = spec.resume_from


class Strategy:
    help = ""
    label: str | None = None       # what chooses on the selection metric (None: nothing)
    samples = False                # draws --num-samples configurations from the space (else: the trial list)
    scheduler = "none"             # its scheduler under --scheduler auto
    resume_may_change = frozenset()

    @property
    def uses_metric(self) -> bool:
        return self.label is not None

    def trials(self, hparams: list, num_samples: int | None) -> int:
        return len(hparams)

    def describe(self, hparams: list, num_samples: int | None, epochs: int, seeds: int, scheduler: str = "auto") -> str:
        raise NotImplementedError

    def plan(self, sweep: Sweep, resume: bool) -> tuple[list[dict], int]:
        """(rows of the trials already finished, how many trials to start)."""
        raise NotImplementedError

    def tune_config(self, sweep: Sweep, todo: int) -> dict:
        """The ``tune.TuneConfig`` keywords of this search (searcher, number of trials)."""
        raise NotImplementedError

    def varied(self, sweep: Sweep) -> list[str]:
        from services.spec import varied_keys

        return varied_keys(sweep.specs)


class Grid(Strategy):
    help = "the full grid"

    def describe(self, hparams, num_samples, epochs, seeds, scheduler="auto") -> str:
        losses = list(dict.fromkeys(h["loss"] for h in hparams))
        per_loss = ", ".join(f"{loss.upper()} {sum(h['loss'] == loss for h in hparams)}" for loss in losses)
        lrs = {h["lr"] for h in hparams}
        sched = SCHEDULERS[self.scheduler if scheduler == "auto" else scheduler]
        return (f"grid: {len(hparams)} trial(s) of {epochs} epoch(s) ({per_loss}; {len(lrs)} learning rate(s) x "
                f"{seeds} seed(s))" + (f", stopped early by {sched.label}" if sched.uses_metric else ""))

    def plan(self, sweep: Sweep, resume: bool) -> tuple[list[dict], int]:
        from services import salvage

        if not resume:
            return [], len(sweep.specs)
        done, todo, found = salvage.plan(sweep.storage, sweep.name, sweep.specs)
        stopped = stopped_keys(sweep.storage, sweep.name)
        done += [salvage.checkpoint_row(s, found[s.key]["content"]) for s in todo if s.key in stopped and s.key in found]
        sweep.specs = [s for s in todo if not (s.key in stopped and s.key in found)]
        print(f"--resume: {len(done)} trial(s) finished and kept, {len(sweep.specs)} to run "
              f"({sum(1 for s in sweep.specs if s.resume_from)} from their last checkpoint)", flush=True)
        for s in sweep.specs:
            sweep.resume_from(s)
        return done, len(sweep.specs)

    def tune_config(self, sweep: Sweep, todo: int) -> dict:
        return {"num_samples": todo, "search_alg": trial_list_searcher([s.hparams for s in sweep.specs]),
                "reuse_actors": True}


class Optuna(Strategy):
    help = "TPE"
    label = "TPE"
    samples = True
    scheduler = "asha"
    resume_may_change = frozenset({"num_samples"})   # more samples continue the study, fewer stop it sooner

    def sampler(self, seed: int):
        import optuna

        return optuna.samplers.TPESampler(seed=seed)

    def trials(self, hparams, num_samples) -> int:
        return num_samples or len(hparams)

    def describe(self, hparams, num_samples, epochs, seeds, scheduler="auto") -> str:
        sched = SCHEDULERS[self.scheduler if scheduler == "auto" else scheduler]
        how = self.help + (f" + {sched.label}" if sched.uses_metric else "")
        return f"{type(self).__name__.lower()}: {self.trials(hparams, num_samples)} trial(s) ({how} over the grid's ranges)"

    def plan(self, sweep: Sweep, resume: bool) -> tuple[list[dict], int]:
        done = []
        if resume:
            sweep.sampler_offset, enqueue, done = study_resume(sweep, study_storage(sweep))
            for spec in enqueue:
                sweep.resume_from(spec)
        return done, max(0, self.trials(sweep.specs, sweep.num_samples) - len(done))   # interrupted ones run again

    def tune_config(self, sweep: Sweep, todo: int) -> dict:
        from services import _private_api as private

        seed = int(sweep.fixed.train.get("seed", 0)) + sweep.sampler_offset
        search_alg = private.persistent_optuna_search(sweep.space, metric=selection_metric(sweep.fixed.train),
                                                      sampler=self.sampler(seed), study_name=sweep.name,
                                                      storage=study_storage(sweep), epochs=sweep.epochs)
        return {"num_samples": todo, "search_alg": search_alg}

    def varied(self, sweep: Sweep) -> list[str]:
        return sweep.space.keys()


class Random(Optuna):
    help = "random search"
    label = None
    scheduler = "none"

    def sampler(self, seed: int):
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)


STRATEGIES: dict[str, Strategy] = {"grid": Grid(), "optuna": Optuna(), "random": Random()}


def scheduler_of(search: str, scheduler: str):
    """The scheduler ``--scheduler`` names (``auto``: the search's own)."""
    return SCHEDULERS[STRATEGIES[search].scheduler if scheduler == "auto" else scheduler]


def metric_chooser(search: str, scheduler: str) -> str | None:
    """'--search optuna (TPE + ASHA)': what would choose trials on the selection metric, or None."""
    strategy, sched = STRATEGIES[search], scheduler_of(search, scheduler)
    parts = [x.label for x in (strategy, sched) if x.uses_metric]
    if not parts:
        return None
    return f"--search {search} ({' + '.join(parts)})" if strategy.uses_metric else f"--scheduler {scheduler} (ASHA)"


# ----------------------------------------------------------------------------- searchers and their state
def trial_list_searcher(hparams: list[dict]):
    """A Tune ``Searcher`` that suggests ``hparams`` in order, one per trial, then FINISHED."""
    from ray.tune.search import Searcher

    class TrialListSearcher(Searcher):
        def __init__(self, configs):
            super().__init__()
            self.configs, self.next = list(configs), 0

        def suggest(self, trial_id):
            if self.next >= len(self.configs):
                return Searcher.FINISHED
            self.next += 1
            return dict(self.configs[self.next - 1])

        def on_trial_complete(self, trial_id, result=None, error=False):
            pass

        def save(self, checkpoint_path):
            with open(checkpoint_path, "wb") as f:
                pickle.dump({"configs": self.configs, "next": self.next}, f)

        def restore(self, checkpoint_path):
            with open(checkpoint_path, "rb") as f:
                self.__dict__.update(pickle.load(f))

    return TrialListSearcher(hparams)


def study_storage(sweep: Sweep):
    """The Optuna storage of the sweep: ``--optuna-storage`` (a database) if given, else a journal file
    ``<storage>/<name>/optuna.journal`` (local or NFS storage only). One object per sweep."""
    if sweep.study is not None:
        return sweep.study
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    url = sweep.optuna_url
    if url:
        out = optuna.storages.RDBStorage(url) if "://" in url and not url.startswith("file://") else url
    elif not sweep.storage.is_local:
        raise st.StorageError(f"--search optuna or random on {sweep.storage.display()} needs --optuna-storage URL (a database): "
                              f"Optuna's journal file needs a local or NFS --storage-path")
    else:
        path = sweep.storage.path(sweep.name, OPTUNA_JOURNAL)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        out = JournalStorage(JournalFileBackend(path))
    sweep.study = out
    return out


def study_resume(sweep: Sweep, storage) -> tuple[int, list, list[dict]]:
    """Resume a study: its finished trials (COMPLETE, PRUNED, FAIL) keep their rows (rebuilt from their
    checkpoints); trials the kill left RUNNING are marked FAIL and enqueued again with the same parameters,
    each continuing from its newest checkpoint. Returns (trials the study holds, enqueued specs, rows)."""
    import dataclasses

    import optuna

    from services import _private_api as private
    from services import salvage
    from services.results import run_row
    from services.spec import TrialSpec

    try:
        study = optuna.load_study(study_name=sweep.name, storage=storage)
    except KeyError:
        return 0, [], []
    found, state = salvage.scan(sweep.storage, sweep.name), optuna.trial.TrialState
    done, enqueue = [], []
    for t in study.get_trials(deepcopy=False):
        spec = TrialSpec.from_hparams(sweep.fixed, dict(t.params))
        hit = found.get(spec.key)
        if t.state in (state.RUNNING, state.WAITING):
            if t.state == state.RUNNING:
                private.fail_trial(study, t)
            study.enqueue_trial(dict(t.params), skip_if_exists=False)
            enqueue.append(dataclasses.replace(spec, resume_from=hit["checkpoint"]) if hit else spec)
        elif hit is None:
            done.append(run_row(spec, {}, RuntimeError("no checkpoint")) if t.state == state.FAIL
                        else run_row(spec, {"epoch": 0}, None))
        else:   # PRUNED ones stop before the last epoch
            done.append(salvage.checkpoint_row(spec, hit["content"], RuntimeError("failed") if t.state == state.FAIL
                                               else None))
    print(f"--resume: Optuna study {sweep.name!r} has {len(done)} finished trial(s); {len(enqueue)} interrupted "
          f"one(s) enqueued again", flush=True)
    return len(study.get_trials(deepcopy=False)), enqueue, done


def stopped_keys(storage: st.Storage, name: str) -> set[str]:
    """The trials of experiment ``name`` a scheduler stopped early (``stopped.json``)."""
    return set(storage.read_json(name, STOPPED)) if storage.exists(name, STOPPED) else set()


def stop_recorder(storage: st.Storage, name: str, epochs: int, key_of):
    """A driver callback adding to ``stopped.json`` each trial that ended without error before ``epochs``
    (a scheduler stopped it); ``key_of(config)``: the trial's spec key."""
    from ray.tune import Callback

    class StopRecorder(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            if int((trial.last_result or {}).get("epoch", epochs)) < epochs:
                keys = stopped_keys(storage, name) | {key_of(trial.config)}
                storage.write_json(sorted(keys), name, STOPPED)

    return StopRecorder()
