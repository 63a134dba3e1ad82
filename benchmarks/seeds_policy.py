"""Which seeds policy: the expected trainings, false positives and power of each, by
simulation (`regaudit.studies.simulate`: studies analysed exactly as `regaudit.study`
analyses them).

Policies: the fixed designs (3 and 8 seeds), and 3 seeds first then up to 8 under
Pocock or O'Brien-Fleming alpha spending, with an open question judged reachable at the
observed effect (conditional power, 0.5) or at the upper end of its one-sided 75% / 90%
interval. Scenarios on the `article` design (14 variants, sd 0.015 of validation accuracy,
a seed effect shared by the variants of a seed with sd 0.01):

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

DESIGN, SD, SEED_SD, MARGIN = "article", 0.015, 0.01, 0.01
BEST = "dropout=0.5,bn=before"
POLICIES = [  # (name, seeds, max seeds, spending, reachable at)
    ("fixed 3", 3, 3, "pocock", None),
    ("fixed 8", 8, 8, "pocock", None),
    ("O'Brien-Fleming, at 0.9", 3, 8, "obrien-fleming", 0.9),
    ("O'Brien-Fleming, observed", 3, 8, "obrien-fleming", 0.5),
    ("Pocock, at 0.9", 3, 8, "pocock", 0.9),
    ("Pocock, at 0.75", 3, 8, "pocock", 0.75),
    ("Pocock, observed", 3, 8, "pocock", 0.5),
]


def effect_size(family):
    """The difference a fixed 8-seed design detects with 90% power at alpha / family."""
    return float((stats.norm.ppf(1 - 0.05 / family / 2) + stats.norm.ppf(0.9)) * SD * np.sqrt(2 / 8))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    setups, questions = design_questions(DESIGN)
    family = len(questions) + sum(q.outcome != "first_loss" for q in questions.values())
    delta = effect_size(family)
    truth = {OUTCOME: {BEST: delta}}
    rows = []
    for name, seeds, max_seeds, spending, reach in POLICIES:
        started = time.perf_counter()
        rng = np.random.default_rng(1)
        null, null_mean, _ = simulate(DESIGN, {}, args.n, seeds, max_seeds, SD, SEED_SD, MARGIN, spending,
                                      rng, plausible_at=reach)
        found, effect_mean, _ = simulate(DESIGN, truth, args.n, seeds, max_seeds, SD, SEED_SD, MARGIN,
                                         spending, rng, plausible_at=reach)
        wrong = max(v.get("up", 0) + v.get("down", 0) for v in null.values())
        recommended = max(sum(v.get("up", 0) for k, v in null.items() if k.startswith("RA260")), 0)
        power = found.get(f"RA260:{BEST}", {}).get("up", 0)
        rows.append({"policy": name, "seeds": seeds, "max_seeds": max_seeds, "spending": spending,
                     "reachable_at": reach, "trainings_no_effect": null_mean,
                     "trainings_effect": effect_mean, "false_positive_max": wrong,
                     "recommendation_false": recommended, "power": power,
                     "seconds": time.perf_counter() - started})
        print(f"{name:28s} trainings {null_mean:6.1f} (no effect) {effect_mean:6.1f} (effect)  "
              f"false positives <= {wrong:.3f}, recommendation {recommended:.3f}  power {power:.2f}",
              flush=True)
    out = {"design": DESIGN, "n": args.n, "sd": SD, "seed_sd": SEED_SD, "margin": MARGIN,
           "effect": delta, "family": family, "rows": rows}
    with open(os.path.join(os.path.dirname(__file__), "seeds_policy.json"), "w") as handle:
        json.dump(out, handle, indent=2)


if __name__ == "__main__":
    main()
