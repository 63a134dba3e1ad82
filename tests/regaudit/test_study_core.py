"""The study's core (no TensorFlow): designs, the config rewrite, the interval and
interaction statistics against closed forms and simulation, and the recommendation."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from regaudit.answer import statistics as S
from regaudit.errors import UsageError
from regaudit.studies import design as D
from regaudit.studies import rewrite as R
from regaudit.studies.recommend import recommendation

from .test_findings import outcome_history, runset


# -- designs -----------------------------------------------------------------------------

def test_article_design_holds_every_claims_contrast_once_with_the_model_as_given_first():
    names = [name for name, _ in D.variants("article")]
    assert names[0] == D.GIVEN and len(names) == len(set(names)) == 14
    for bn in ("none", "after", "before"):  # Dropout off/on x BN none/after/before
        assert f"dropout=0,bn={bn}" in names and f"dropout=0.5,bn={bn}" in names
    assert {"dropout=0.1,bn=after", "dropout=0.8,bn=after"} <= set(names)  # outside 0.2-0.7
    assert {"dropout=0.5,bn=none,lr=10", "dropout=0.5,bn=after,lr=10"} <= set(names)
    trials = D.trials("article", 3)
    assert len(trials) == 42 and [s for _, _, s in trials[:14]] == [0] * 14  # seed-major


def test_design_files_in_yaml_and_json_and_their_errors(tmp_path):
    (tmp_path / "d.yaml").write_text("blocks:\n  - {dropout: [0, 0.3]}\n  - {bn: [none, before], lr: [1, 3]}\n")
    names = [n for n, _ in D.variants(str(tmp_path / "d.yaml"))]
    assert names == ["as given", "dropout=0", "dropout=0.3", "bn=none", "bn=none,lr=3", "bn=before",
                     "bn=before,lr=3"]  # lr=1 is no factor
    (tmp_path / "d.json").write_text(json.dumps({"factors": {"spatial": [True], "bn_momentum": [0.9]}}))
    assert [n for n, _ in D.variants(str(tmp_path / "d.json"))][1] == "spatial=true,bn_momentum=0.9"
    bad = {"u.json": {"factors": {"dropuot": [0.1]}}, "r.json": {"factors": {"dropout": [1.5]}},
           "b.json": {"factors": {"bn": ["sideways"]}}, "e.json": {"levels": {}}}
    said = {"u.json": "unknown factor 'dropuot'", "r.json": "dropout rate 1.5; expected a rate in [0, 1)",
            "b.json": "bn level 'sideways'", "e.json": "expected a mapping with 'factors'"}
    for name, content in bad.items():
        (tmp_path / name).write_text(json.dumps(content))
        with pytest.raises(UsageError, match=said[name].replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            D.variants(str(tmp_path / name))
    with pytest.raises(UsageError, match="neither a design"):
        D.variants("no-such-design")


# -- the config rewrite on hand-written configs ------------------------------------------

def layer(class_name, name, **config):
    return {"module": "keras.layers", "class_name": class_name, "config": {"name": name, **config}}


def sequential(*layers):
    return {"class_name": "Sequential", "config": {"name": "m", "layers": list(layers)}}


def classes(config):
    inner = config["config"]
    return [(e["class_name"], e["config"].get("activation"), e["config"].get("rate"))
            for e in inner["layers"]]


SEED_CNN = sequential(layer("InputLayer", "in"), layer("Conv2D", "c1", activation="relu"),
                      layer("BatchNormalization", "bn1", momentum=0.9), layer("MaxPooling2D", "p"),
                      layer("Dropout", "d1", rate=0.25), layer("Conv2D", "c2", activation="relu"),
                      layer("BatchNormalization", "bn2", momentum=0.9), layer("Flatten", "f"),
                      layer("Dropout", "d2", rate=0.5), layer("Dense", "out", activation="softmax"))


def test_bn_before_splits_each_fused_activation_and_keeps_the_models_bn_settings():
    config, notes = R.apply(SEED_CNN, {"bn": "before"})
    assert classes(config) == [
        ("InputLayer", None, None), ("Conv2D", "linear", None), ("BatchNormalization", None, None),
        ("Activation", "relu", None), ("MaxPooling2D", None, None), ("Dropout", None, 0.25),
        ("Conv2D", "linear", None), ("BatchNormalization", None, None), ("Activation", "relu", None),
        ("Flatten", None, None), ("Dropout", None, 0.5), ("Dense", "softmax", None)]
    assert {e["config"].get("momentum") for e in config["config"]["layers"]
            if e["class_name"] == "BatchNormalization"} == {0.9}
    assert notes == [] and SEED_CNN["config"]["layers"][1]["config"]["activation"] == "relu"  # a copy
    back, _ = R.apply(config, {"bn": "after"})  # before -> after folds nothing: BN after the Activation
    assert [c for c, _, _ in classes(back)][1:5] == ["Conv2D", "Activation", "BatchNormalization", "MaxPooling2D"]


def test_dropout_levels_none_rate_and_inserted_before_the_output_layer():
    off, _ = R.apply(SEED_CNN, {"dropout": 0, "bn": "none"})
    assert [c for c, _, _ in classes(off)] == ["InputLayer", "Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dense"]
    rate, _ = R.apply(SEED_CNN, {"dropout": 0.3})
    assert [r for c, _, r in classes(rate) if c == "Dropout"] == [0.3, 0.3]
    plain = sequential(layer("InputLayer", "in"), layer("Dense", "h", activation="relu"),
                       layer("Dense", "out", activation="softmax"))
    added, notes = R.apply(plain, {"dropout": 0.2})
    assert [c for c, _, _ in classes(added)] == ["InputLayer", "Dense", "Dropout", "Dense"]
    assert notes and "inserted before the output layer 'out'" in notes[0]


def test_dropout_after_bn_is_li_et_al_remedy_and_spatial_follows_the_input_rank():
    moved, notes = R.apply(SEED_CNN, {"dropout_after_bn": True})
    assert [c for c, _, _ in classes(moved)] == ["InputLayer", "Conv2D", "BatchNormalization", "MaxPooling2D",
                                                 "Conv2D", "BatchNormalization", "Flatten", "Dropout", "Dense"]
    assert [r for c, _, r in classes(moved) if c == "Dropout"] == [0.5] and "'d2'" in notes[0]
    spatial, notes = R.apply(SEED_CNN, {"spatial": True}, ranks={"d1": 4, "d2": 2})
    assert [c for c, _, _ in classes(spatial) if "Dropout" in c] == ["SpatialDropout2D", "Dropout"]


def functional():
    """input -> Dense(relu) -> Dense(relu) -> Dense(softmax), as Keras serializes it."""
    def tensor(source, shape):
        return {"class_name": "__keras_tensor__",
                "config": {"shape": shape, "dtype": "float32", "keras_history": [source, 0, 0]}}

    def node(source, shape):
        return [{"args": [tensor(source, shape)], "kwargs": {}}]

    layers = [layer("InputLayer", "in") | {"name": "in", "inbound_nodes": []},
              layer("Dense", "h1", activation="relu") | {"name": "h1", "inbound_nodes": node("in", [None, 8])},
              layer("Dense", "h2", activation="relu") | {"name": "h2", "inbound_nodes": node("h1", [None, 4])},
              layer("Dense", "out", activation="softmax") | {"name": "out", "inbound_nodes": node("h2", [None, 4])}]
    return {"class_name": "Functional", "config": {"name": "f", "layers": layers,
                                                   "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]]}}


def test_functional_configs_are_rewired_through_keras_history():
    config, _ = R.apply(functional(), {"bn": "before"})
    entries = {e["config"]["name"]: e for e in config["config"]["layers"]}
    chain, current = [], "out"
    while entries[current]["inbound_nodes"]:
        current = entries[current]["inbound_nodes"][0]["args"][0]["config"]["keras_history"][0]
        chain.append(entries[current]["class_name"])
    assert chain == ["Activation", "BatchNormalization", "Dense", "Activation", "BatchNormalization",
                     "Dense", "InputLayer"]
    removed, _ = R.apply(config, {"bn": "none"})
    names = [e["class_name"] for e in removed["config"]["layers"]]
    assert "BatchNormalization" not in names
    assert removed["config"]["output_layers"] == [["out", 0, 0]]


def test_what_a_config_cannot_rewrite_asks_for_a_builder():
    shared = functional()
    shared["config"]["layers"][1]["inbound_nodes"] *= 2  # h1 called twice
    with pytest.raises(R.NeedsBuilder, match="layer 'h1' is called 2 times.*builder"):
        R.apply(shared, {"bn": "after"})
    with pytest.raises(R.NeedsBuilder, match="layer 'block' holds Dropout"):
        R.apply(SEED_CNN, {"dropout": 0.1}, roles={"block": "custom"})
    with pytest.raises(R.NeedsBuilder, match="subclassed"):
        R.apply({"class_name": "VAE", "config": {"name": "vae"}}, {"dropout": 0.1})


# -- statistics -------------------------------------------------------------------------

def test_welch_interval_and_interaction_match_closed_forms_and_cover_at_95_percent():
    a, b = [0.91, 0.93, 0.92, 0.95], [0.85, 0.88, 0.86]
    d, low, high = S.welch_interval(a, b)
    welch = stats.ttest_ind(a, b, equal_var=False)
    se = np.sqrt(np.var(a, ddof=1) / 4 + np.var(b, ddof=1) / 3)
    df = se**4 / ((np.var(a, ddof=1) / 4) ** 2 / 3 + (np.var(b, ddof=1) / 3) ** 2 / 2)
    assert d == pytest.approx(np.mean(a) - np.mean(b))
    assert high - d == pytest.approx(stats.t.ppf(0.975, df) * se)
    assert 2 * stats.t.sf(d / se, df) == pytest.approx(welch.pvalue)  # the same t and df as scipy
    rng = np.random.default_rng(0)
    covered, rejected = 0, 0
    for _ in range(2000):  # true interaction 0.3, then 0
        g = [rng.normal(m, s, 4) for m, s in ((0, 1), (1, 2), (0, 0.5), (0.7, 1))]
        estimate, lo, hi, p = S.interaction(*g)
        covered += lo <= 0.3 <= hi
        g[3] = g[3] + 0.3
        rejected += S.interaction(*g)[3] < 0.05
    assert 0.93 <= covered / 2000 <= 0.97  # Welch-Satterthwaite is approximate: near 95%
    assert rejected / 2000 <= 0.065


# -- the recommendation ----------------------------------------------------------------

def study_runs(means, n=3, sd=0.005, seed=0):
    rng = np.random.default_rng(seed)
    values, groups = {}, {}
    for variant, mean in means.items():
        for i in range(n):
            run = f"{variant}#{i}"
            values[run] = (1.0, float(np.clip(mean + sd * rng.normal(), 0, 1)))
            groups[run] = variant
    return runset(history=outcome_history(values)), groups


# -- the article's claims on a study's groups ------------------------------------------

def tagged_study(means, n=3, sd=0.005, seed=0):
    """A study's runs: groups named by levels (bn, dropout, lr), with the tags RegAudit
    writes and the level params a study trial logs."""
    runs, groups = study_runs(means, n, sd, seed)
    tags, params = [], []
    for run in runs.runs["run"]:
        levels = dict(part.split("=") for part in groups[run].split(","))
        bn, rate = levels.get("bn", "after"), float(levels.get("dropout", 0.5))
        tags += [(run, "regaudit.dropout_layers", "1" if rate else "0"),
                 (run, "regaudit.dropout_rates", str(rate) if rate else ""),
                 (run, "regaudit.batchnorm_layers", "0" if bn == "none" else "2"),
                 (run, "regaudit.batchnorm_placement", {"none": "none", "after": "after_activation",
                                                        "before": "before_activation"}[bn])]
        params.append({f"study.{k}": v for k, v in levels.items()})
    runs.tags = pd.DataFrame(tags, columns=["run", "key", "value"])
    runs.runs["params"] = params
    return runs, groups


def final_by_group(runs, groups, names):
    final = runs.history.query("measure == 'val_accuracy' and epoch == 2")
    return {g: [v for r, v in zip(final.run, final.value) if groups[r] == g] for g in names}


def robust_contrast(by, weights):
    """(estimate, se, df) of sum w mean with each group's own variance and Satterthwaite's
    degrees of freedom (the robust cell-means model's closed form)."""
    estimate = sum(w * np.mean(by[g]) for g, w in weights.items())
    parts = {g: w ** 2 * np.var(by[g], ddof=1) / len(by[g]) for g, w in weights.items()}
    se = np.sqrt(sum(parts.values()))
    df = sum(parts.values()) ** 2 / sum(p ** 2 / (len(by[g]) - 1) for g, p in parts.items())
    return estimate, se, df


def test_recommendation_names_the_best_significant_variant_with_its_interval_and_holm_p():
    means = {"as given": 0.90, "bn=before": 0.95, "dropout=0.3": 0.93, "bn=none": 0.90}
    runs, groups = study_runs(means)
    [found] = recommendation(runs, groups)
    n = found.numbers
    assert found.id == "RA260" and n["variant"] == "bn=before" and n["comparisons"] == 3 and n["family"] == 3
    by = final_by_group(runs, groups, means)
    estimate, se, df = robust_contrast(by, {"bn=before": 1, "as given": -1})
    half = stats.t.ppf(1 - 0.05 / 3 / 2, df) * se  # simultaneous over the family of 3 contrasts
    assert n["difference"] == pytest.approx(estimate)
    assert (n["low"], n["high"]) == pytest.approx((estimate - half, estimate + half))
    p = 2 * stats.t.sf(abs(estimate) / se, df)
    assert n["p_holm"] <= min(1, 6 * p) and n["p_holm"] < 0.05
    assert found.text.startswith(f"For this model: bn=before: val_accuracy {estimate:+.3g} (simultaneous 95% interval")
    # the answer as an action first, at the precision its interval supports
    assert found.numbers["action"].startswith(
        "Change your model: put BatchNormalization before the activation (val_accuracy +")


def test_no_better_variant_says_keep_the_model_with_what_the_seeds_could_detect():
    runs, groups = study_runs({"as given": 0.90, "bn=none": 0.80, "dropout=0": 0.90}, sd=0.02)
    [found] = recommendation(runs, groups)
    assert found.numbers["variant"] is None and found.numbers["worse"] == ["bn=none"]
    assert found.text.startswith("Keep the model as given: no variant is detectably better")
    assert found.numbers["action"].startswith("Keep your model as given: no variant is detectably better")
    assert found.numbers["action"].endswith("; do not remove BatchNormalization.")
    assert 0 < found.numbers["detectable"] < 1
    one, groups1 = study_runs({"as given": 0.9, "bn=none": 0.8}, n=1)
    assert "no degrees of freedom" in recommendation(one, groups1)[0].text
    assert recommendation(*study_runs({"bn=none": 0.8, "bn=after": 0.9})) == []  # no model as given
    # noise as wide as the whole range: no detectable difference is claimed beyond it
    wide, groups2 = study_runs({"as given": 0.5, "bn=none": 0.5}, n=2, sd=0.6, seed=3)
    [found] = recommendation(wide, groups2)
    assert "cannot detect any difference" in found.text or found.numbers["detectable"] < 1


def test_a_variant_within_the_margin_is_negligible_and_said_so():
    runs, groups = study_runs({"as given": 0.90, "bn=none": 0.9005, "dropout=0": 0.90}, n=8, sd=0.002)
    [found] = recommendation(runs, groups)
    assert set(found.numbers["negligible"]) == {"bn=none", "dropout=0"}
    assert "Within +-0.01 of it (negligible): 'bn=none', 'dropout=0'" in found.text


def test_bn_learning_rate_claim_is_the_interaction_of_bn_and_the_rate_factor():
    from regaudit.answer.claims import batchnorm_learning_rate
    from regaudit.answer.outcomes import group_setups

    means = {"bn=none": 0.93, "bn=after": 0.95, "bn=none,lr=10": 0.70, "bn=after,lr=10": 0.94}
    runs, groups = tagged_study(means)
    found = batchnorm_learning_rate(runs, groups, group_setups(runs, groups))
    by = final_by_group(runs, groups, means)
    weights = {"bn=after,lr=10": 1, "bn=after": -1, "bn=none,lr=10": -1, "bn=none": 1}
    estimate, se, df = robust_contrast(by, weights)
    assert (found.numbers["estimate"], found.numbers["se"], found.numbers["df"]) == pytest.approx((estimate, se, df))
    assert found.numbers["verdict"] == "supported" and found.numbers["p_holm"] < 0.05
    runs, groups = tagged_study({"bn=none": 0.93, "bn=after": 0.95, "bn=none,lr=10": 0.93,
                                 "bn=after,lr=10": 0.70})
    assert batchnorm_learning_rate(runs, groups, group_setups(runs, groups)).numbers["verdict"] == "contradicted"
    runs, groups = tagged_study({"bn=none": 0.93, "bn=after": 0.95})
    found = batchnorm_learning_rate(runs, groups, group_setups(runs, groups))
    assert found.numbers["verdict"] == "not shown" and "learning rate and at a higher one" in found.text


def test_dropout_claim_pairs_only_variants_alike_but_for_dropout():
    from regaudit.answer.claim_contrasts import alike_pairs
    from regaudit.answer.outcomes import group_setups

    runs, groups = tagged_study({"dropout=0,bn=after": 0.9, "dropout=0.5,bn=after": 0.9,
                                 "dropout=0.5,bn=before": 0.9, "dropout=0,bn=before": 0.9,
                                 "dropout=0.5,bn=after,lr=10": 0.9})
    pairs = alike_pairs(group_setups(runs, groups), "dropout")
    assert sorted(pairs) == [("dropout=0.5,bn=after", "dropout=0,bn=after"),
                             ("dropout=0.5,bn=before", "dropout=0,bn=before")]


def test_spending_releases_alpha_once_over_the_looks():
    from regaudit.studies.sequential import look_level, spent

    assert spent(1.0, spending="obrien-fleming") == pytest.approx(0.05) and spent(
        0.375, spending="obrien-fleming") == pytest.approx(2 - 2 * stats.norm.cdf(stats.norm.ppf(0.975) / np.sqrt(0.375)))
    assert spent(1.0, spending="pocock") == pytest.approx(0.05)
    assert spent(0.375, spending="pocock") == pytest.approx(0.05 * np.log(1 + (np.e - 1) * 0.375))
    looks = [(3, 0), (5, 3), (6, 5), (8, 6)]
    for spending in ("pocock", "obrien-fleming"):
        assert sum(look_level(n, p, 8, spending=spending) for n, p in looks) == pytest.approx(0.05)
    assert look_level(3, 0, 3) == pytest.approx(0.05)  # seeds == max_seeds: the fixed design


def test_dropout_rate_claim_compares_only_variants_alike_but_for_the_rate():
    from regaudit.answer.claims import dropout_rates
    from regaudit.answer.outcomes import group_setups

    # inside the range only without BN, outside only with BN (which fails): pooled, the
    # range would look decisive; alike but for the rate, nothing compares
    runs, groups = tagged_study({"dropout=0.3,bn=none": 0.97, "dropout=0.5,bn=none": 0.97,
                                 "dropout=0.1,bn=after": 0.2, "dropout=0.8,bn=after": 0.2})
    found = dropout_rates(runs, groups, group_setups(runs, groups))
    assert found.numbers["verdict"] == "not shown" and "no groups to compare" in found.text
    means = {"dropout=0.3,bn=none": 0.97, "dropout=0.8,bn=none": 0.90,
             "dropout=0.3,bn=after": 0.50, "dropout=0.8,bn=after": 0.45}
    runs, groups = tagged_study(means)
    found = dropout_rates(runs, groups, group_setups(runs, groups))
    assert {c for _, _, c in found.numbers["compared"]} == {"no BN", "BN after"}
    # the mean over the two contexts of inside minus outside
    weights = {"dropout=0.3,bn=none": 0.5, "dropout=0.8,bn=none": -0.5,
               "dropout=0.3,bn=after": 0.5, "dropout=0.8,bn=after": -0.5}
    estimate, se, _ = robust_contrast(final_by_group(runs, groups, means), weights)
    assert (found.numbers["estimate"], found.numbers["se"]) == pytest.approx((estimate, se))
    assert found.numbers["verdict"] == "supported"


def test_dropout_batchnorm_interaction_is_the_difference_of_dropouts_effects():
    from regaudit.studies.effects import dropout_batchnorm_interaction

    means = {"dropout=0,bn=none": 0.90, "dropout=0.5,bn=none": 0.95,
             "dropout=0,bn=after": 0.96, "dropout=0.5,bn=after": 0.91}
    runs, groups = tagged_study(means)
    [found] = dropout_batchnorm_interaction(runs, groups)
    by = final_by_group(runs, groups, means)
    weights = {"dropout=0.5,bn=after": 1, "dropout=0,bn=after": -1, "dropout=0.5,bn=none": -1,
               "dropout=0,bn=none": 1}
    estimate, se, df = robust_contrast(by, weights)
    half = stats.t.ppf(1 - 0.05 / found.numbers["family"] / 2, df) * se  # simultaneous over the study
    assert (found.numbers["estimate"], found.numbers["low"], found.numbers["high"], found.numbers["p"]) == \
        pytest.approx((estimate, estimate - half, estimate + half, 2 * stats.t.sf(abs(estimate) / se, df)))
    assert "they clash" in found.text and found.level == "notice"


def test_the_estimate_counts_trials_side_by_side_by_the_cores_one_trial_keeps_busy():
    from regaudit.studies.estimate import RAY_START, REPORT_ONCE, REPORT_PER_RUN, estimate

    timed = {"process start": 4.0, "data and model": 1.0, "first epoch (with the audit's setup)": 6.0,
             "each further epoch": 2.0, "train end": 1.0, "cores used": 1.0}
    one_trial = 1.0 + 6.0 + 2.0 * 4 + 1.0  # 5 epochs
    fixed = RAY_START + REPORT_ONCE + REPORT_PER_RUN * 10 + 3.0
    alone = estimate(dict(timed, checks=3.0), trials=10, epochs=5, max_concurrent=2, cores=2)
    assert alone.parallel == 2.0 and alone.seconds == pytest.approx(fixed + 4.0 + 10 * one_trial / 2)
    busy = estimate(dict(timed, **{"cores used": 1.6}), trials=10, epochs=5, max_concurrent=2, cores=2)
    assert busy.parallel == pytest.approx(2 / 1.6) and busy.seconds > alone.seconds
    whole = estimate(dict(timed, **{"cores used": 3.0}), trials=10, epochs=5, max_concurrent=4, cores=2)
    assert whole.parallel == 1.0 and whole.cores_used == 2.0  # never below one after another
    assert sum(whole.parts.values()) == pytest.approx(whole.seconds)


def test_a_claim_averaged_over_settings_is_withdrawn_when_one_setting_goes_the_other_way():
    from regaudit.answer.claims import batchnorm_placement
    from regaudit.answer.outcomes import group_setups

    # BN before the activation: +0.10 without Dropout, -0.03 with it; on average +0.035
    means = {"dropout=0,bn=before": 0.95, "dropout=0,bn=after": 0.85,
             "dropout=0.5,bn=before": 0.90, "dropout=0.5,bn=after": 0.93}
    runs, groups = tagged_study(means, n=4, sd=0.003)
    found = batchnorm_placement(runs, groups, group_setups(runs, groups))
    assert found.numbers["estimate"] == pytest.approx(0.035, abs=0.01) and found.numbers["p_holm"] < 0.05
    assert found.numbers["verdict"] == "not shown" and "but not in every setting" in found.text
    # the same effect in both settings: supported
    means["dropout=0.5,bn=before"] = 1.0
    runs, groups = tagged_study(means, n=4, sd=0.003)
    assert batchnorm_placement(runs, groups, group_setups(runs, groups)).numbers["verdict"] == "supported"
