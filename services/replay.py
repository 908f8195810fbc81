"""Replaying a searcher on a finished grid (the tabular benchmark of ``services.anytime``): one loss's grid as a
:class:`Table`, the proposers (``METHODS``: grid order, random, TPE, each with or without ASHA) and
:func:`replay`, one search run that reads the stored curves instead of training. The space and the ASHA rungs
are the sweep's own (``services.search``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from services.search import Asha, OptunaSpace

# ----------------------------------------------------------------------------- the tabular benchmark
@dataclass(frozen=True)
class Config:
    """One configuration of one loss's grid, with all its seeds."""

    index: int                   # position in compare's candidate order (its tie-break)
    point: dict                  # lr, logit_bias and the loss's own parameters
    score: float                 # selection metric: seed mean of the final epoch's value (compare's rule)
    top1: float                  # reported metric (test top-1): seed mean of the final epoch's value
    curve: tuple                 # per epoch (from 1): seed mean of the selection metric, None where not evaluated
    epoch_seconds: tuple         # per epoch: worker-seconds summed over the seeds (start-up in the first)


@dataclass
class Table:
    """One loss's complete grid: what a replay reads."""

    loss: str
    configs: list[Config]
    epochs: int
    seeds: int
    pick: int                    # compare's choice (index), the incumbent every replay must end with

    @property
    def budget(self) -> int:
        """Trial-epochs of the whole grid."""
        return len(self.configs) * self.seeds * self.epochs

    def dims(self) -> list[str]:
        """The hyperparameters that vary over the loss's configurations."""
        names = sorted({k for c in self.configs for k in c.point})
        return [k for k in names if len({c.point.get(k) for c in self.configs}) > 1]


# ----------------------------------------------------------------------------- searchers
class _Space:
    """The ``--search optuna`` space over one loss's grid (services.search.OptunaSpace: log-uniform lr over
    the grid's span, each numeric parameter uniform over its span, others categorical) and the snap of a
    proposed point to the nearest configuration: distance in coordinates scaled to [0, 1] (lr in log)."""

    def __init__(self, table: Table):
        self.table = table
        self.names = table.dims()
        self.numeric = [n for n in self.names if OptunaSpace.numeric([c.point.get(n) for c in table.configs])]
        self.categorical = [n for n in self.names if n not in self.numeric]
        self.low, self.high = {}, {}
        for n in self.numeric:
            vals = [self._raw(n, c.point[n]) for c in table.configs]
            self.low[n], self.high[n] = min(vals), max(vals)
        self.coords = np.array([[self.scale(n, c.point[n]) for n in self.numeric] for c in table.configs]).reshape(
            len(table.configs), len(self.numeric))

    @staticmethod
    def _raw(name: str, v) -> float:
        return math.log(float(v)) if name == "lr" else float(v)

    def scale(self, name: str, v) -> float:
        return (self._raw(name, v) - self.low[name]) / (self.high[name] - self.low[name])

    def distributions(self) -> dict:
        """``OptunaSpace.distributions`` of the grid's varying dimensions (the ``--search optuna`` space)."""
        configs, loss = self.table.configs, self.table.loss
        grid = {n: sorted({c.point[n] for c in configs}, key=repr) for n in self.names if n != "lr"}
        dists = OptunaSpace([loss], {loss: grid}, [c.point["lr"] for c in configs]).distributions(loss)
        return {n: dists[n] for n in self.names}

    def nearest(self, proposal: dict, pool: list[int]) -> int:
        """The configuration of ``pool`` (sorted indices) nearest to ``proposal``; ties to the lowest index."""
        x = np.array([self.scale(n, proposal[n]) for n in self.numeric])
        d = np.sum((self.coords[pool] - x) ** 2, axis=1) if self.numeric else np.zeros(len(pool))
        for n in self.categorical:
            d = d + np.array([0.0 if self.table.configs[i].point[n] == proposal[n] else 1.0 for i in pool])
        return pool[int(np.argmin(d))]

    def params(self, index: int) -> dict:
        p = self.table.configs[index].point
        return {n: (float(p[n]) if n in self.numeric else p[n]) for n in self.names}


class OrderProposer:
    """The grid's configurations in a random permutation (seeded)."""

    def __init__(self, table: Table, seed: int):
        self.order = list(np.random.default_rng(seed).permutation(len(table.configs)))

    def propose(self, pool: list[int]) -> int:
        while self.order[0] not in pool:
            self.order.pop(0)
        return int(self.order.pop(0))

    def observe(self, index: int, value: float | None, intermediate: dict[int, float]) -> None:
        pass


class RandomProposer:
    """Random search over the ``--search optuna`` space (what Optuna's RandomSampler draws), snapped."""

    def __init__(self, table: Table, seed: int):
        self.space, self.rng = _Space(table), np.random.default_rng(seed)
        self.choices = {n: sorted({repr(c.point[n]): c.point[n] for c in table.configs}.items())
                        for n in self.space.categorical}

    def propose(self, pool: list[int]) -> int:
        point = {}
        for n in self.space.numeric:
            raw = self.rng.uniform(self.space.low[n], self.space.high[n])
            point[n] = math.exp(raw) if n == "lr" else raw
        for n in self.space.categorical:
            point[n] = self.choices[n][int(self.rng.integers(len(self.choices[n])))][1]
        return self.space.nearest(point, pool)

    def observe(self, index: int, value: float | None, intermediate: dict[int, float]) -> None:
        pass


class TPEProposer:
    """Optuna's ``TPESampler(seed=seed)``, the sampler ``--search optuna`` uses (Ray's OptunaSearch default),
    over the same space. Each asked point is snapped to a configuration; the asked trial is told FAIL
    (TPE ignores failed trials) and the evaluated configuration is added with its value (COMPLETE) or its
    rung values (PRUNED, as ``--search optuna`` tells an ASHA-stopped trial)."""

    def __init__(self, table: Table, seed: int):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna, self.space = optuna, _Space(table)
        self.dists = self.space.distributions()
        self.study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))

    def propose(self, pool: list[int]) -> int:
        if len(pool) == 1 or not self.dists:
            return pool[0]
        trial = self.study.ask(self.dists)
        self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        return self.space.nearest(trial.params, pool)

    def observe(self, index: int, value: float | None, intermediate: dict[int, float]) -> None:
        if not self.dists:
            return
        state = self.optuna.trial.TrialState
        self.study.add_trial(self.optuna.trial.create_trial(
            params=self.space.params(index), distributions=self.dists, value=value,
            state=state.COMPLETE if value is not None else state.PRUNED, intermediate_values=intermediate))


@dataclass(frozen=True)
class Method:
    label: str
    proposer: Callable[[Table, int], object]
    asha: bool


METHODS = {
    "grid_order": Method("grid, random order", OrderProposer, asha=False),
    "random": Method("random search", RandomProposer, asha=False),
    "asha": Method("random search + ASHA", RandomProposer, asha=True),
    "tpe": Method("TPE (Optuna)", TPEProposer, asha=False),
    "optuna": Method("TPE + ASHA (--search optuna)", TPEProposer, asha=True),
}


@dataclass
class Trace:
    """One search run: after every spend, the trial-epochs and worker-seconds spent so far and the
    incumbent (a configuration index; -1 before any configuration finished)."""

    epochs: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    incumbent: list = field(default_factory=list)
    reached: list = field(default_factory=list)   # (configuration, epochs it reached in the search), in order
    search_end: int = 0


class _Ledger:
    """Trains configurations epoch by epoch (reads their stored curves), charges the budget and keeps the
    incumbent: the finished configuration with the best score, ties to the lower index (compare.choose)."""

    def __init__(self, table: Table):
        self.table, self.trained = table, [0] * len(table.configs)
        self.spent, self.seconds, self.best = 0, 0.0, -1
        self.trace = Trace()

    def train(self, index: int, upto: int) -> None:
        c, start = self.table.configs[index], self.trained[index]
        self.spent += self.table.seeds * (upto - start)
        self.seconds += sum(c.epoch_seconds[start:upto])
        self.trained[index] = upto
        if upto == self.table.epochs:
            best = self.table.configs[self.best] if self.best >= 0 else None
            if best is None or c.score > best.score or (c.score == best.score and index < self.best):
                self.best = index
        self.trace.epochs.append(self.spent)
        self.trace.seconds.append(self.seconds)
        self.trace.incumbent.append(self.best)


def asha_cutoff(recorded: list[float], eta: float) -> float | None:
    """Tune's ``_Bracket.cutoff``: the (1 − 1/η) · 100th percentile of the rung's recorded values (numpy's
    linear interpolation), None while nothing is recorded."""
    return float(np.nanpercentile(recorded, (1 - 1 / eta) * 100)) if recorded else None


def replay(table: Table, method: str, seed: int, asha: Asha = Asha()) -> Trace:
    """One search run of ``method`` (a :data:`METHODS` key) with search seed ``seed`` on ``table``."""
    m = METHODS[method]
    proposer = m.proposer(table, seed)
    ledger = _Ledger(table)
    eta, _ = asha.resolved(table.epochs)
    rungs = asha.rungs(table.epochs) if m.asha else ()
    recorded: dict[int, list[float]] = {r: [] for r in rungs}
    stopped: dict[int, tuple[int, float]] = {}
    pool = list(range(len(table.configs)))
    while pool:
        index = proposer.propose(pool)
        pool.remove(index)
        curve, stop = table.configs[index].curve, None
        for r in rungs:
            ledger.train(index, r)
            value = curve[r - 1]
            if value is None:        # not evaluated at this epoch: Tune records nothing and continues
                continue
            cut = asha_cutoff(recorded[r], eta)
            recorded[r].append(value)
            if cut is not None and value < cut:
                stop = r
                break
        ledger.trace.reached.append((index, stop or table.epochs))
        if stop is None:
            ledger.train(index, table.epochs)
            proposer.observe(index, table.configs[index].score, {})
        else:
            stopped[index] = (stop, curve[stop - 1])
            proposer.observe(index, None, {e: curve[e - 1] for e in range(1, stop + 1) if curve[e - 1] is not None})
    ledger.trace.search_end = ledger.spent
    for index in sorted(stopped, key=lambda i: (-stopped[i][1], i)):   # the rest of the budget: resume them
        ledger.train(index, table.epochs)
    return ledger.trace
