"""Which seeds policy: the expected trainings, false positives and power of each, by
simulation (`regaudit.studies.simulate`: studies analysed exactly as `regaudit.study`
analyses them).

Policies: the fixed designs (3 and 8 seeds), and 3 seeds first then up to 8 under
Pocock or O'Brien-Fleming alpha spending, with an open question judged reachable at the
observed effect (conditional power, 0.5) or at the upper end of its one-sided 75% / 90%
interval. Scenarios on the `article` design (14 variants, sd 0.015 of validation accuracy,
a seed effect shared by the variants of a seed with sd 0.004, the +0.07 within-seed
correlation measured on the seed study):

- no effect: every variant alike; the false-positive rate is the largest share of studies
  claiming a difference on one question, and for the recommendation (any variant named
  better);
- an effect: one variant (Dropout 0.5, BN before) better than every other by the
  difference a fixed design of 8 seeds detects with 90% power at Holm's first step;
  power is the share of studies that recommend it.

    python benchmarks/seeds_policy.py            # 1000 studies per policy and scenario
    python benchmarks/seeds_policy.py --n 200

Prints a table and writes benchmarks/seeds_policy.json (the table in docs/study.md).
"""

import argparse
import json
import os
import time

import numpy as np
from scipy import stats

from regaudit.answer.analysis import OUTCOME
from regaudit.studies.simulate import design_questions, simulate

DESIGN, SD, SEED_SD, MARGIN = "article", 0.015, 0.004, 0.01  # the seed study: runs sharing a seed correlate at +0.07
#: the seed study's seed-to-seed sd of validation accuracy per variant (8 seeds, 4 epochs,
#: benchmarks/reanalyse_study.json): the heteroscedastic scenario
SEED_STUDY_SD = {
    "as given": 0.049, "dropout=0,bn=none": 0.0076, "dropout=0,bn=after": 0.042, "dropout=0,bn=before": 0.12,
    "dropout=0.5,bn=none": 0.0096, "dropout=0.5,bn=after": 0.086, "dropout=0.5,bn=before": 0.16,
    "dropout=0.1,bn=after": 0.044, "dropout=0.3,bn=after": 0.065, "dropout=0.8,bn=after": 0.097,
    "dropout=0.5,bn=none,lr=3": 0.0076, "dropout=0.5,bn=none,lr=10": 0.0098,
    "dropout=0.5,bn=after,lr=3": 0.076, "dropout=0.5,bn=after,lr=10": 0.22}
BEST = "dropout=0.5,bn=before"
POLICIES = [  # (name, seeds, max seeds, spending, reachable at[, every variant gets the seeds])
    ("fixed 3", 3, 3, "pocock", None),
    ("fixed 8", 8, 8, "pocock", None),
    ("before: every variant, O'Brien-Fleming, at 0.9", 3, 8, "obrien-fleming", 0.9, True),
    ("O'Brien-Fleming, at 0.9 (the default)", 3, 8, "obrien-fleming", 0.9),
    ("O'Brien-Fleming, observed", 3, 8, "obrien-fleming", 0.5),
    ("Pocock, at 0.9", 3, 8, "pocock", 0.9),
    ("Pocock, at 0.75", 3, 8, "pocock", 0.75),
    ("Pocock, observed", 3, 8, "pocock", 0.5),
]


def effect_size(family):
    """The difference a fixed 8-seed design detects with 90% power between two variants at
    alpha / family (two cells of 8 seeds: 14 degrees of freedom)."""
    df = 14
    return float((stats.t.ppf(1 - 0.05 / family / 2, df) + stats.t.ppf(0.9, df)) * SD * np.sqrt(2 / 8))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    setups, questions = design_questions(DESIGN)
    family = len(questions)  # Holm's first divisor with Shaffer's constraints: the contrasts
    delta = effect_size(family)
    rows = []
    for name, seeds, max_seeds, spending, reach, *balanced in POLICIES:
        started = time.perf_counter()
        rng = np.random.default_rng(1)
        row = {"policy": name, "seeds": seeds, "max_seeds": max_seeds, "spending": spending, "reachable_at": reach}
        for scenario, sd, effect in (("", SD, delta), ("seed study sd ", SEED_STUDY_SD, None)):
            null, null_mean, _ = simulate(DESIGN, {}, args.n, seeds, max_seeds, sd, SEED_SD, MARGIN, spending,
                                          rng, plausible_at=reach, balanced=bool(balanced))
            row[scenario + "trainings_no_effect"] = null_mean
            row[scenario + "false_positive_max"] = max(v.get("up", 0) + v.get("down", 0)
                                                       for k, v in null.items() if k != "RA260")
            row[scenario + "recommendation_false"] = null.get("RA260", {}).get("names a variant", 0)
            if effect is None:
                continue
            found, effect_mean, _ = simulate(DESIGN, {OUTCOME: {BEST: effect}}, args.n, seeds, max_seeds, sd,
                                             SEED_SD, MARGIN, spending, rng, plausible_at=reach,
                                             balanced=bool(balanced))
            row["trainings_effect"], row["power"] = effect_mean, found.get(f"RA260:{BEST}", {}).get("up", 0)
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        print(f"{name:48s} trainings {row['trainings_no_effect']:6.1f} (no effect) {row['trainings_effect']:6.1f} "
              f"(effect) {row['seed study sd trainings_no_effect']:6.1f} (seed study's sd, no effect)  false "
              f"positives {row['false_positive_max']:.3f} / {row['seed study sd false_positive_max']:.3f} (a question), "
              f"{row['recommendation_false']:.3f} / {row['seed study sd recommendation_false']:.3f} "
              f"(recommendation)  power {row['power']:.2f}", flush=True)
    out = {"design": DESIGN, "n": args.n, "sd": SD, "seed_sd": SEED_SD, "margin": MARGIN,
           "effect": delta, "family": family, "rows": rows}
    with open(os.path.join(os.path.dirname(__file__), "seeds_policy.json"), "w") as handle:
        json.dump(out, handle, indent=2)


if __name__ == "__main__":
    main()
