"""A study's engine overhead, read back from MLflow: the study's wall time (its parent
run, first start to end) against its trials' own durations packed `--max-concurrent` at
a time (each trial's run from start to end, placed in the order they started on the slot
that frees first: the least a perfect engine could take with these trials).

    python benchmarks/study_packing.py --tracking-uri sqlite:///mlflow.db --study-id ID [--slots 2]

The ratio is what Ray Tune, worker start and the looks' analysis add; the target is at most
1.3. The report at the end (logged into the parent) is counted separately. Not a test.
"""

import argparse
import heapq
import json
import os


def packed(durations, slots):
    """Seconds to run `durations` in order on `slots` parallel slots (each to the first free)."""
    free = [0.0] * slots
    for seconds in durations:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--study-id", required=True)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    import mlflow

    from regaudit.studies.runs import study_runs

    client = mlflow.MlflowClient(args.tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    trials = [r for e in experiments for r in study_runs(client, e, args.study_id, "FINISHED")]
    parents = [r for e in experiments for r in study_runs(client, e, args.study_id, parent=True)]
    trials.sort(key=lambda r: r.info.start_time)
    durations = [(r.info.end_time - r.info.start_time) / 1000 for r in trials]
    last_trial = max(r.info.end_time for r in trials)
    # a study without a parent run (before it had one): from its first trial's start
    start = parents[0].info.start_time if parents else trials[0].info.start_time
    wall = (last_trial - start) / 1000
    report = (parents[0].info.end_time - last_trial) / 1000 if parents else float("nan")
    ideal = packed(durations, args.slots)
    out = {"study_id": args.study_id, "trials": len(trials), "slots": args.slots,
           "trial_seconds_sum": sum(durations), "packed_s": ideal, "wall_to_last_trial_s": wall,
           "ratio": wall / ideal, "report_and_close_s": report}
    print(f"{len(trials)} trials, {sum(durations):.0f} s of training; packed {args.slots} at a time "
          f"{ideal:.0f} s; the study took {wall:.0f} s to its last trial: x{wall / ideal:.2f}; then "
          f"{report:.0f} s for the report")
    with open(os.path.join(os.path.dirname(__file__), "study_packing.json"), "w") as handle:
        json.dump(out, handle, indent=2)


if __name__ == "__main__":
    main()
