"""A study's figures on constructed runs: each point is its variant's mean with the 95%
t-interval `statistics.bounded_interval` gives (an accuracy's within [0, 1])."""

import numpy as np
import pandas as pd
import pytest

from regaudit.read import RunSet
from regaudit.reports import study_plots
from regaudit.schema import COLUMNS, HISTOGRAM_COLUMNS
from regaudit.answer.statistics import bounded_interval


def study(values):
    """{(levels dict as tuple, seed): final val_accuracy} -> a RunSet of a study."""
    history, runs, params = [], [], []
    for (levels, seed), value in values.items():
        run = ",".join(f"{k}={v}" for k, v in levels) + f"#{seed}"
        runs.append(run)
        params.append({f"study.{k}": str(v) for k, v in levels})
        for epoch, (train, val) in ((1, (0.5, 0.4)), (2, (min(1.0, value + 0.05), value))):
            history += [dict(zip(COLUMNS, (run, epoch, 0, "val", "model", "Model", m, v)))
                        for m, v in (("accuracy", train), ("val_accuracy", val))]
    frame = lambda items: pd.DataFrame(items, columns=list(COLUMNS))  # noqa: E731
    return RunSet(
        runs=pd.DataFrame({"run": runs, "name": runs, "params": params, "final": [{}] * len(runs),
                           "experiment_id": "0", "model": "m", "params_count": 0}),
        activations=frame([]), histograms=pd.DataFrame(columns=list(HISTOGRAM_COLUMNS)),
        shift=frame([]), ensemble=frame([]), history=frame(history),
        layers=pd.DataFrame(columns=["run", "name"]), tags=pd.DataFrame(columns=["run", "key", "value"]))


def test_dose_response_points_are_variant_means_with_bounded_t_intervals():
    rng = np.random.default_rng(0)
    values = {((("dropout", rate), ("bn", bn)), seed): float(np.clip(0.9 + 0.05 * rate + 0.08 * rng.normal(), 0, 1))
              for rate in (0.0, 0.3, 0.5) for bn in ("none", "after") for seed in range(3)}
    values[((("dropout", 0.5), ("bn", "none"), ("lr", 10.0)), 0)] = 0.2  # another factor: not drawn
    runs = study(values)
    figure = study_plots.dose_response(runs, {}, {})
    ax = figure.axes[0]
    containers = {c.get_label(): c for c in ax.containers}  # one errorbar per BN setting
    assert set(containers) == {"BN none", "BN after"}
    xs, ys = containers["BN none"].lines[0].get_data()
    assert list(xs) == [0.0, 0.3, 0.5]
    expected = [np.mean([v for (lv, _), v in values.items() if lv == (("dropout", r), ("bn", "none"))])
                for r in (0.0, 0.3, 0.5)]
    assert ys == pytest.approx(expected)
    _, low, high = bounded_interval([v for (lv, _), v in values.items() if lv == (("dropout", 0.0), ("bn", "none"))],
                                    (0.0, 1.0))
    bars = containers["BN none"].lines[2][0].get_segments()[0]  # its first error bar
    assert (bars[0][1], bars[1][1]) == pytest.approx((low, high)) and 0 <= low and high <= 1
    assert figure.axes[1].get_ylabel() == "gen_gap_acc"


def test_grid_and_learning_rate_figures_need_their_levels():
    values = {((("dropout", d), ("bn", bn)), s): 0.9 for d in (0.0, 0.5) for bn in ("none", "after", "before")
              for s in range(2)}
    values |= {((("dropout", 0.5), ("bn", bn), ("lr", 10.0)), s): 0.5 for bn in ("none", "after") for s in range(2)}
    runs = study(values)
    grid = study_plots.batchnorm_grid(runs, {}, {})
    assert [t.get_text() for t in grid.axes[0].get_xticklabels()] == ["none", "after", "before"]
    tolerance = study_plots.learning_rate_tolerance(runs, {}, {})
    assert tolerance.axes[0].get_xscale() == "log"
    assert {t.get_text() for t in tolerance.axes[0].get_legend().get_texts()} == {"with BN", "without BN"}
    plain = study({((("bn", "none"),), 0): 0.9, ((("bn", "after"),), 0): 0.8})
    assert study_plots.dose_response(plain, {}, {}) is None
    assert study_plots.learning_rate_tolerance(plain, {}, {}) is None
