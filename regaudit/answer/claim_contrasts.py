"""The contrasts of the seed article's claims: which groups each claim compares, as
weights {group: weight} over the groups' means (summing to 0), from the groups' setups
(`regaudit.answer.outcomes.group_setups`). Groups are compared only with groups alike
but for the claim's factor, averaged over the settings that hold both (a main effect over
the design). `regaudit.answer.claims` judges them.
"""

#: The article's range of good dropout rates.
RATE_RANGE = (0.2, 0.7)


def alike_pairs(setups, with_key):
    """[(group with `with_key`, the group without it and otherwise the same setup)]: the
    same other regularizer, the same study levels (learning rate, ...), and for Dropout
    the same BN placement, for BN the same dropout rates."""
    out = []
    other = "batchnorm" if with_key == "dropout" else "dropout"
    same = "placement" if with_key == "dropout" else "rates"
    for a, sa in setups.items():
        for b, sb in setups.items():
            if sa[with_key] and not sb[with_key] and sa[other] == sb[other] and \
                    sa["others"] == sb["others"] and sa[same] == sb[same]:
                out.append((a, b))
    return out


def mean_of_differences(pairs):
    """{group: weight}: the mean over `pairs` [(a, b)] of mu_a - mu_b."""
    weights = {}
    for a, b in pairs:
        weights[a] = weights.get(a, 0.0) + 1 / len(pairs)
        weights[b] = weights.get(b, 0.0) - 1 / len(pairs)
    return {g: w for g, w in weights.items() if abs(w) > 1e-12}


def mean_of_interactions(quads):
    """{group: weight}: the mean over `quads` [(a, b, c, d)] of (mu_b - mu_a) - (mu_d - mu_c)."""
    weights = {}
    for a, b, c, d in quads:
        for group, sign in ((a, -1), (b, 1), (c, 1), (d, -1)):
            weights[group] = weights.get(group, 0.0) + sign / len(quads)
    return {g: w for g, w in weights.items() if abs(w) > 1e-12}


def _rate_quads(setups):
    """[(lr factor, BN at 1, BN at factor, no BN at 1, no BN at factor)]: groups alike but
    for BN and the study's learning-rate factor (the same dropout rates and other levels)."""
    def key(s):
        return (s["dropout"], tuple(s["rates"]), tuple(kv for kv in s["others"] if kv[0] != "lr"))

    out = []
    for base_bn, sb in setups.items():
        if not sb["batchnorm"] or sb["lr"] != 1.0:
            continue
        for base_plain, sp in setups.items():
            if sp["batchnorm"] or sp["lr"] != 1.0 or key(sp) != key(sb):
                continue
            for high_bn, hb in setups.items():
                if not hb["batchnorm"] or hb["lr"] == 1.0 or key(hb) != key(sb) or \
                        hb["placement"] != sb["placement"]:
                    continue
                for high_plain, hp in setups.items():
                    if not hp["batchnorm"] and hp["lr"] == hb["lr"] and key(hp) == key(sb):
                        out.append((hb["lr"], base_bn, high_bn, base_plain, high_plain))
    return out


def _rates_context(s):
    """What else a BN placement comparison holds equal: the dropout rates, a study's levels."""
    rates = ",".join(f"{r:g}" for r in s["rates"]) or "none"
    return (f"dropout {rates}" + "".join(f", {k}={v}" for k, v in s["others"]))


def _bn_context(s):
    """What else a dropout-rate comparison holds equal: BN and its placement, a study's levels."""
    bn = "no BN" if not s["batchnorm"] else f"BN {s['placement'].replace('_activation', '')}"
    return bn + "".join(f", {k}={v}" for k, v in s["others"])


def _in_range(s):
    if not s["dropout"]:
        return None
    return "inside" if all(RATE_RANGE[0] <= x <= RATE_RANGE[1] for x in s["rates"] if x > 0) else "outside"


def within(setups, level_of, context_of, levels):
    """({group: weight}, [(first level's groups, second's, context)]): the mean over the
    contexts (the rest of the setup) that hold both levels of (the mean of the first
    level's groups minus the mean of the second's), so no other difference rides along."""
    cells = {}
    for group, s in setups.items():
        found = level_of(s)
        if found in levels:
            cells.setdefault(context_of(s), {}).setdefault(found, []).append(group)
    both = {c: by for c, by in cells.items() if all(level in by for level in levels)}
    weights = {}
    for by in both.values():
        for sign, found in zip((1, -1), levels):
            for group in by[found]:
                weights[group] = weights.get(group, 0.0) + sign / len(by[found]) / len(both)
    return weights, [(by[levels[0]], by[levels[1]], c) for c, by in both.items()]


def pairs_of(key):
    def contrast(setups):
        pairs = alike_pairs(setups, key)
        return mean_of_differences(pairs), [([a], [b], "") for a, b in pairs]
    return contrast


def rate_contrast(setups):
    """The BN x learning-rate interaction at the highest rate factor trained (the claim is
    about higher rates; a smaller factor, where neither model suffers, would only dilute it),
    averaged over the BN placements that hold it."""
    quads = _rate_quads(setups)
    highest = max((q[0] for q in quads), default=None)
    quads = [q for q in quads if q[0] == highest]
    return (mean_of_interactions([q[1:] for q in quads]),
            [([q[2], q[4]], [q[1], q[3]], f"x{q[0]:g}") for q in quads])


def placement_contrast(setups):
    return within(setups, lambda s: s["placement"] if s["batchnorm"] else None, _rates_context,
                  ("before_activation", "after_activation"))


def range_contrast(setups):
    return within(setups, _in_range, _bn_context, ("inside", "outside"))


def combined_contrast(setups):
    """Both regularizers against the same Dropout alone (the same rates) or the same BN
    alone (the same placement), pairs alike in a study's other levels (the learning rate)."""
    def alike(b, s):
        kept = "rates" if setups[s]["dropout"] else "placement"
        return setups[b]["others"] == setups[s]["others"] and setups[b][kept] == setups[s][kept]

    both = [g for g, s in setups.items() if s["dropout"] and s["batchnorm"]]
    singles = [g for g, s in setups.items() if s["dropout"] != s["batchnorm"]]
    pairs = [(b, s) for b in both for s in singles if alike(b, s)]
    return mean_of_differences(pairs), [([a], [b], "") for a, b in pairs]
