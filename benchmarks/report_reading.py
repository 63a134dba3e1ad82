"""A report as its reader gets it: its size, the words before its first figure, the time to
render it, and the notebook view, on runs already in MLflow.

    python benchmarks/report_reading.py --tracking-uri sqlite:///mlflow.db \\
        --experiment regaudit-demo [--group-by regaudit.variant] [--repeats 3]

Each figure is drawn once and encoded both ways in the same process: the true-colour PNG
`savefig` writes (the report before) and the 64-colour PNG the report writes now, so the
size and time ratios are paired on the same figures. The notebook view: the summary
`_repr_html_` now shows against the whole report it embedded before. Prints a table and
writes benchmarks/report_reading.json. Not a test.
"""

import argparse
import io
import json
import os
import tempfile
import time


def _true_colour(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    return buffer.getvalue()


def figures_both_ways(runs, labels, groups, repeats):
    """{stem: (true-colour bytes, seconds; 256-colour bytes, seconds)}, best of `repeats`."""
    import matplotlib

    from regaudit.reports import plots
    from regaudit.reports.report import SECTIONS, _png

    out = {}
    for section in SECTIONS:
        if not len(runs.table(section.table)):
            continue
        for stem, function, _ in section.figures:
            with matplotlib.rc_context(plots.RC):
                figure = function(runs, labels, groups)
                if figure is None:
                    continue
                timings = {"before": [], "now": []}
                for _ in range(repeats):
                    for way, encode in (("before", _true_colour), ("now", _png)):
                        began = time.perf_counter()
                        data = encode(figure)
                        timings[way].append((time.perf_counter() - began, len(data)))
            out[stem] = {way: {"seconds": min(t for t, _ in values), "bytes": values[0][1]}
                         for way, values in timings.items()}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--group-by", default="regaudit.variant")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri

    from regaudit.read import load_runs
    from regaudit.reports.html import words_before_figure
    from regaudit.reports.report import build_report, run_labels

    runs = load_runs(experiment=args.experiment)
    groups = runs.group(args.group_by)
    figures = figures_both_ways(runs, run_labels(runs), groups, args.repeats)
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        made = build_report(runs, os.path.join(folder, "report.html"), group_by=args.group_by)
        seconds = time.perf_counter() - began
        with open(made.path, encoding="utf-8") as handle:
            page = handle.read()
    began = time.perf_counter()
    summary = runs._repr_html_()
    summary_seconds = time.perf_counter() - began
    before = sum(f["before"]["bytes"] for f in figures.values())
    now = sum(f["now"]["bytes"] for f in figures.values())
    result = {
        "runs": len(runs.run_ids), "groups": len(set(groups.values())),
        "report_bytes": len(page.encode()), "report_seconds": round(seconds, 2),
        "words_before_first_figure": len(words_before_figure(page)),
        "figure_bytes_true_colour": before, "figure_bytes_now": now,
        "figure_bytes_ratio": round(now / before, 3),
        "encode_seconds_ratio": round(sum(f["now"]["seconds"] for f in figures.values())
                                      / sum(f["before"]["seconds"] for f in figures.values()), 3),
        "notebook_bytes_before_at_least": len(page.encode()), "notebook_bytes_now": len(summary.encode()),
        "notebook_seconds_now": round(summary_seconds, 2), "figures": figures,
    }
    for key, value in result.items():
        if key != "figures":
            print(f"{key:32} {value}")
    with open(os.path.join(os.path.dirname(__file__), "report_reading.json"), "w") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
