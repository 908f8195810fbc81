"""The line a sweep prints before it starts names the scheduler that will actually run (services.search)."""
import pytest

from services import search

HP = [{"loss": "gce", "lr": 0.1, "q": 0.3}, {"loss": "gce", "lr": 0.03, "q": 0.7}]


@pytest.mark.parametrize("name,scheduler,text", [
    ("optuna", "auto", "optuna: 12 trial(s) (TPE + ASHA over the grid's ranges)"),
    ("optuna", "none", "optuna: 12 trial(s) (TPE over the grid's ranges)"),
    ("random", "auto", "random: 12 trial(s) (random search over the grid's ranges)"),
    ("random", "asha", "random: 12 trial(s) (random search + ASHA over the grid's ranges)"),
    ("grid", "auto", "grid: 2 trial(s) of 20 epoch(s) (GCE 2; 2 learning rate(s) x 1 seed(s))"),
    ("grid", "asha", "grid: 2 trial(s) of 20 epoch(s) (GCE 2; 2 learning rate(s) x 1 seed(s)), stopped early by ASHA"),
])
def test_describe_names_the_scheduler_that_runs(name, scheduler, text):
    assert search.STRATEGIES[name].describe(HP, 12, 20, 1, scheduler) == text
    # and it is the one search.scheduler_of resolves for the sweep itself
    assert ("ASHA" in text) == search.scheduler_of(name, scheduler).uses_metric
