"""Figures: each axes-level function on a tiny tidy frame, and every figure of a real
study checked for overlapping or clipped text by measuring its text bounding boxes."""

import matplotlib
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg

from regaudit.read import load_runs
from regaudit.reports import plots
from regaudit.reports.report import SECTIONS, run_labels


def tiny(epochs=3, runs=("a", "b"), groups=("g1", "g2")):
    rows = []
    for run, group in zip(runs, groups):
        for epoch in range(1, epochs + 1):
            rows.append({"run": run, "group": group, "epoch": epoch, "value": 0.5 + 0.1 * epoch,
                         "p15": -1.0, "p50": 0.0 + epoch, "p85": 1.0 + epoch, "layer": "dense",
                         "k": 2 ** (epoch - 1)})
    return pd.DataFrame(rows)


def test_axes_level_functions_take_tidy_data_and_return_their_axes():
    data = tiny()
    palette = {"g1": "red", "g2": "blue"}
    ax = plots.group_lines(data)
    assert isinstance(ax, Axes) and len(ax.lines) >= 2
    ax = plots.percentile_band(data, palette=palette)
    assert [list(l.get_ydata()) for l in ax.lines] == [[1.0, 2.0, 3.0]] * 2 and len(ax.collections) == 2
    ax = plots.ratio_lines(data.assign(value=[0.5, 1, 2, 0.25, 1, 4]))
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] < 0.25 and ax.get_ylim()[1] > 4
    ax = plots.layer_heatmap(data[data.run == "a"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["dense"]
    ax = plots.final_bars(data[data.epoch == 3], palette=palette)
    assert len(ax.patches) >= 2
    det = pd.DataFrame({"run": ["a", "b"], "group": ["g1", "g2"], "value": [0.7, 0.8]})
    ax = plots.ensemble_curve(data, det, palette=palette)
    assert ax.get_xscale() == "log" and len(ax.lines) == 4
    existing = matplotlib.figure.Figure().subplots()
    assert plots.group_lines(data, ax=existing) is existing


def text_boxes(figure):
    """(text, window bbox) of every text matplotlib draws: titles, axis labels, the tick
    labels within view, legend entries, the figure title."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = []
    for ax in figure.axes:
        if not ax.get_visible():
            continue
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        for axis in (ax.xaxis, ax.yaxis):
            texts += [tick.label1 for tick in axis._update_ticks() if tick.label1.get_visible()]
            texts += [tick.label2 for tick in axis._update_ticks() if tick.label2.get_visible()]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    for legend in figure.legends:
        texts += legend.get_texts() + [legend.get_title()]
    if figure._suptitle is not None:
        texts.append(figure._suptitle)
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts
            if t.get_visible() and t.get_text().strip()]


def overlaps(figure):
    boxes = text_boxes(figure)
    width, height = figure.bbox.width, figure.bbox.height
    clipped = [text for text, box in boxes
               if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1]
    crossing = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            inner_a = box_a.expanded(0.98, 0.9)  # shared edges and anti-aliasing are not overlap
            if inner_a.overlaps(box_b.expanded(0.98, 0.9)):
                crossing.append((a, b))
    return clipped, crossing


def test_no_figure_of_a_real_study_has_overlapping_or_clipped_text(study):
    runs = load_runs(sorted(study["runs"].values()))
    labels, groups = run_labels(runs), runs.group()
    drawn = 0
    for section in SECTIONS:
        for stem, function, _ in section.figures:
            with matplotlib.rc_context(plots.RC):
                figure = function(runs, labels, groups)
            if figure is None:
                continue
            clipped, crossing = overlaps(figure)
            assert clipped == [], (stem, clipped)
            assert crossing == [], (stem, crossing[:5])
            drawn += 1
    assert drawn == 7


def test_ratios_are_on_a_log_scale_and_identity_layers_are_left_out_and_named(study):
    runs = load_runs(sorted(study["runs"].values()))
    labels, groups = run_labels(runs), runs.group()
    figure = plots.batchnorm_shift(runs, labels, groups)
    assert all(ax.get_yscale() == "log" for ax in figure.axes if ax.get_visible())
    bands = plots.percentile_bands(runs, labels, groups)
    titles = [ax.get_title() for ax in bands.axes if ax.get_visible()]
    assert all(title.startswith("layer ") for title in titles)
    assert not any("flatten" in t or "dropout" in t for t in titles)
    assert "repeat their input" in bands._suptitle.get_text() and "flatten" in bands._suptitle.get_text()
    legend = [t.get_text() for t in bands.legends[0].get_texts()]
    assert set(legend) == set(groups.values())  # groups in the legend, layers in the titles


def test_the_overlap_check_finds_overlapping_and_clipped_text():
    figure = matplotlib.figure.Figure(figsize=(3, 2))
    ax = figure.subplots()
    ax.set_yticks([0.5, 0.51], labels=["first layer name", "second layer name"])
    ax.set_ylabel("a label pushed off the page", labelpad=200)
    clipped, crossing = overlaps(figure)
    assert ("first layer name", "second layer name") in crossing
    assert "a label pushed off the page" in clipped


def test_a_group_of_many_runs_is_drawn_as_its_median_with_the_band_of_its_runs():
    """Past MAX_RUN_LINES runs in a group, a line per run gives way to the group's median
    (numpy's, per epoch) and the band where 80% of its runs lie: 1,000 runs stay one line;
    a group of few runs beside it keeps a line per run."""
    import numpy as np

    from regaudit.reports.axes import MAX_RUN_LINES

    rng = np.random.default_rng(0)
    many = MAX_RUN_LINES * 3
    rows = [{"run": f"r{i}", "group": "many", "epoch": e, "value": float(rng.normal(e, 1.0)),
             "p15": float(rng.normal(e - 1)), "p50": float(rng.normal(e)), "p85": float(rng.normal(e + 1)),
             "k": 2 ** (e - 1)}
            for i in range(many) for e in (1, 2, 3)]
    data = pd.DataFrame(rows)
    medians = data.groupby("epoch")["value"].median().to_numpy()
    def drawn(ax):  # lines with data (seaborn adds empty ones for its legend)
        return [line for line in ax.lines if len(line.get_xdata())]

    ax = plots.group_lines(data, palette={"many": "red"})
    assert len(drawn(ax)) == 1 and np.allclose(drawn(ax)[0].get_ydata(), medians)
    low, high = data.groupby("epoch")["value"].quantile(0.1), data.groupby("epoch")["value"].quantile(0.9)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert np.isclose(band.min(), low.min()) and np.isclose(band.max(), high.max())
    ax = plots.percentile_band(data, palette={"many": "red"})
    assert len(drawn(ax)) == 1
    assert np.allclose(drawn(ax)[0].get_ydata(), data.groupby("epoch")["p50"].median().to_numpy())
    ax = plots.ensemble_curve(data, palette={"many": "red"})
    assert np.allclose(drawn(ax)[0].get_ydata(), medians)
    assert "80% of its runs" in ax.get_xlabel()
    few = tiny(runs=("a", "b"), groups=("few", "few"))
    ax = plots.group_lines(pd.concat([data, few[data.columns.intersection(few.columns)]]),
                           palette={"many": "red", "few": "blue"})
    assert len(drawn(ax)) == 2  # both groups as medians once one group has many runs
