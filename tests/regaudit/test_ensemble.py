"""Dropout-ensemble measures on synthetic probability arrays: numpy references and the
closed forms of identical, independent and perfectly calibrated members."""

import itertools

import numpy as np
import pytest

from regaudit.measures import ensemble as E


def softmax(logits):
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@pytest.fixture
def members(rng):
    base = rng.normal(size=(200, 5)) * 2
    return softmax(base[None] + rng.normal(scale=1.0, size=(12, 200, 5)))


def test_identical_members_disagree_never_share_no_information_and_count_once(rng):
    p = softmax(rng.normal(size=(100, 4)))
    same = np.repeat(p[None], 8, axis=0)
    assert E.disagreement(same) == 0.0
    assert E.mutual_info(same) == pytest.approx(0.0, abs=1e-12)
    assert E.n_eff(same, rng.integers(0, 4, 100)) == pytest.approx(1.0)
    assert E.det_mc_kl(same, p) == pytest.approx(0.0, abs=1e-12)


def test_independent_members_count_as_about_t(rng):
    t, n = 16, 4000
    members = softmax(rng.normal(scale=3.0, size=(t, n, 3)))
    assert E.n_eff(members, rng.integers(0, 3, n)) == pytest.approx(t, rel=0.1)


def test_n_eff_follows_the_mean_pairwise_correlation(members, rng):
    labels = rng.integers(0, 5, 200)
    picked = members[:, np.arange(200), labels]
    rho = np.mean([np.corrcoef(picked[a], picked[b])[0, 1]
                   for a, b in itertools.permutations(range(12), 2)])
    assert E.n_eff(members, labels) == pytest.approx(12 / (1 + 11 * rho), rel=1e-10)


def test_disagreement_equals_the_mean_over_pairs(members):
    votes = members.argmax(-1)
    pairs = [np.mean(votes[a] != votes[b]) for a, b in itertools.combinations(range(12), 2)]
    assert E.disagreement(members) == pytest.approx(np.mean(pairs), rel=1e-12)


def test_entropies_and_mutual_information(members):
    def h(p):
        return -np.sum(p * np.log(p), axis=-1)

    mean = members.mean(0)
    assert E.pred_entropy(members) == pytest.approx(np.mean(h(mean)), rel=1e-12)
    assert E.expected_entropy(members) == pytest.approx(np.mean(h(members)), rel=1e-12)
    assert E.mutual_info(members) == pytest.approx(np.mean(h(mean)) - np.mean(h(members)), rel=1e-10)
    assert E.mutual_info(members) > 0


def test_accuracies_nll_and_kl(members, rng):
    labels = rng.integers(0, 5, 200)
    det = softmax(rng.normal(size=(200, 5)))
    mean = members.mean(0)
    out = E.classification_measures(members, det, labels)
    assert out["det_acc"] == np.mean(det.argmax(-1) == labels)
    assert out["mc_acc"] == np.mean(mean.argmax(-1) == labels)
    assert out["ens_gap"] == pytest.approx(out["mc_acc"] - out["det_acc"])
    assert out["member_acc"] == pytest.approx(np.mean([(m.argmax(-1) == labels).mean() for m in members]))
    assert out["det_nll"] == pytest.approx(-np.mean(np.log(det[np.arange(200), labels])), rel=1e-12)
    assert out["mc_nll"] == pytest.approx(-np.mean(np.log(mean[np.arange(200), labels])), rel=1e-12)
    kl = np.mean(np.sum(mean * np.log(mean / det), axis=-1))
    assert out["det_mc_kl"] == pytest.approx(kl, rel=1e-10)
    assert out["acc_at_k:12"] == pytest.approx(out["mc_acc"])  # all members, any order
    assert sorted(int(k.split(":")[1]) for k in out if k.startswith("acc_at_k")) == [1, 2, 4, 8, 12]


def test_acc_at_1_is_the_member_accuracy_averaged_over_orders(members, rng):
    labels = rng.integers(0, 5, 200)
    curve = E.acc_at_k(members, labels, orders=400, seed=3)
    assert curve[1] == pytest.approx(E.member_acc(members, labels), abs=0.01)


def test_ece_is_zero_for_a_perfectly_calibrated_toy_and_matches_numpy(rng):
    # confidence 0.8 on every input, right on exactly 80% of them
    probabilities = np.tile([0.8, 0.2], (1000, 1))
    labels = np.r_[np.zeros(800, int), np.ones(200, int)]
    assert E.ece(probabilities, labels) == pytest.approx(0.0, abs=1e-12)
    p = softmax(rng.normal(scale=2, size=(500, 3)))
    y = rng.integers(0, 3, 500)
    conf, right = p.max(-1), p.argmax(-1) == y
    edges = np.linspace(0, 1, 16)
    want = sum(np.mean(m) * abs(right[m].mean() - conf[m].mean())
               for m in ((conf > lo) & (conf <= hi) for lo, hi in zip(edges[:-1], edges[1:])) if m.any())
    assert E.ece(p, y) == pytest.approx(want, rel=1e-10)


def test_label_free_measures_only_without_labels(members):
    out = E.classification_measures(members, members.mean(0))
    assert set(out) == {"det_mc_kl", "disagreement", "pred_entropy", "expected_entropy",
                        "mutual_info", "n_eff"}


def test_predictive_variance_and_drop_fraction(rng):
    y = rng.normal(size=(10, 30, 2))
    assert E.predictive_variance(y) == pytest.approx(np.mean(y.var(axis=0)))
    assert E.drop_frac(25, 100) == 0.25 and np.isnan(E.drop_frac(0, 0))
