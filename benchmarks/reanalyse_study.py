"""The same study's runs analysed again: how many of the article's claims each analysis
decides, on the first look's runs and on all of them.

    python benchmarks/reanalyse_study.py --tracking-uri sqlite:///mlflow.db --study-id ID \\
        [--old findings.json] [--level 0.0486]

`--old`: the `--json` output the study printed (its verdicts, from the analysis that ran
it); the runs are re-read from MLflow and analysed by today's model (one linear model per
outcome, contrasts, Holm with Shaffer's constraints) on the first 3 seeds and on every
seed, at 0.05 and at `--level` (the level the old study stopped at). Prints a table and
writes benchmarks/reanalyse_study.json (the table in docs/study.md). Not a test.
"""

import argparse
import json
import os

CLAIMS = ("RA251", "RA252", "RA253", "RA254", "RA255", "RA256", "RA257")


def verdicts(findings):
    out = {f["id"] if isinstance(f, dict) else f.id: (f["numbers"] if isinstance(f, dict) else f.numbers).get("verdict")
           for f in findings if (f["id"] if isinstance(f, dict) else f.id) in CLAIMS}
    return {c: out.get(c, "n/a") for c in CLAIMS}


def decided(table):
    return sum(v in ("supported", "contradicted", "negligible") for v in table.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--study-id", required=True)
    parser.add_argument("--old", default=None)
    parser.add_argument("--level", type=float, default=None)
    parser.add_argument("--first-seeds", type=int, default=3)
    args = parser.parse_args()
    import mlflow

    from regaudit.answer.analysis import OUTCOME, analyse
    from regaudit.answer.run_findings import findings
    from regaudit.answer.statistics import at_level
    from regaudit.read import load_runs
    from regaudit.studies.runs import SEED_TAG, VARIANT_TAG, study_runs

    mlflow.set_tracking_uri(args.tracking_uri)
    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = [r for e in experiments for r in study_runs(client, e, args.study_id, "FINISHED")]
    first = [r.info.run_id for r in runs if int(r.data.tags[SEED_TAG]) < args.first_seeds]
    every = [r.info.run_id for r in runs]
    rows = {}
    if args.old:
        with open(args.old) as handle:
            old = json.load(handle)
        rows[f"old analysis, {len(old['runs'])} runs (as the study reported)"] = verdicts(old["findings"])
    levels = [0.05] + ([args.level] if args.level else [])
    correlation = {}
    for name, ids in ((f"first {args.first_seeds} seeds", first), ("every seed", every)):
        loaded = load_runs(ids)
        groups = loaded.group(VARIANT_TAG)
        for alpha in levels:
            with at_level(alpha):
                found = findings(loaded, groups)
                analysis = analyse(loaded, groups)
            rows[f"linear model, {name} ({len(ids)} runs), level {alpha:.3g}"] = verdicts(found)
            recommendation = next((f.text for f in found if f.id == "RA260"), "")
            rows[f"linear model, {name} ({len(ids)} runs), level {alpha:.3g}"]["RA260"] = recommendation
        for kind in ("outcome", "gap", "first_loss"):
            model = analysis.model(kind)
            if model is not None:
                correlation[f"{name}: {kind}"] = {"within_seed_correlation": model.within_seed_correlation,
                                                  "sd_by_group": {c: float(v) ** 0.5 for c, v in model.variance.items()}}
    print(f"{'analysis':72s} decided  " + " ".join(CLAIMS))
    for name, table in rows.items():
        print(f"{name:72s} {decided(table)} of 7  " + " ".join(str(table[c])[:5] for c in CLAIMS))
    for name, table in rows.items():
        if table.get("RA260"):
            print(f"{name}: {table['RA260']}")
    for name, numbers in correlation.items():
        sds = numbers["sd_by_group"].values()
        print(f"{name}: within-seed correlation {numbers['within_seed_correlation']:+.2f}; seed-to-seed sd "
              f"by group {min(sds):.3g} to {max(sds):.3g}")
    out = {"study_id": args.study_id, "rows": rows, "decided": {k: decided(v) for k, v in rows.items()},
           "pairing": correlation, "outcome": OUTCOME}
    with open(os.path.join(os.path.dirname(__file__), "reanalyse_study.json"), "w") as handle:
        json.dump(out, handle, indent=2)


if __name__ == "__main__":
    main()
