"""Effective dropout-ensemble measures (docs/measures.md, section 3) from Monte-Carlo samples.

Dropout trains an implicit ensemble of subnetworks (Srivastava et al. 2014); at inference
Keras uses the single weight-scaled network. With T Monte-Carlo samples of the class
probabilities, only the Dropout layers on (Gal & Ghahramani 2016), these functions
measure how large and diverse that ensemble is and how well the deterministic network
stands in for it. Arrays: `members` [T, n, classes], `deterministic` [n, classes],
`labels` [n] integer classes (or None: only the label-free measures apply).
"""

import numpy as np

from regaudit.measures.registry import (
    AS_LOGGED, COUNT, FRACTION, NATS, OUTPUT, SOURCE, UNITLESS, declare, fill,
)
from regaudit.schema import TABLE_ENSEMBLE

#: Probabilities are clipped here before logarithms.
EPS = 1e-12
ECE_BINS = 15


def _entropy(p):
    p = np.clip(p, EPS, 1.0)
    return -np.sum(p * np.log(p), axis=-1)


def accuracy(probabilities, labels):
    """Fraction of inputs whose argmax class equals the label."""
    return float(np.mean(np.argmax(probabilities, axis=-1) == labels))


def nll(probabilities, labels):
    """Mean negative log-likelihood -log p[label] (probabilities clipped at 1e-12)."""
    picked = np.take_along_axis(probabilities, np.asarray(labels)[:, None], axis=-1)[:, 0]
    return float(-np.mean(np.log(np.clip(picked, EPS, 1.0))))


def det_mc_kl(members, deterministic):
    """det_mc_kl = mean over inputs of KL(mean_t p_t || p_det)."""
    mean = np.clip(members.mean(axis=0), EPS, 1.0)
    det = np.clip(deterministic, EPS, 1.0)
    return float(np.mean(np.sum(mean * (np.log(mean) - np.log(det)), axis=-1)))


def acc_at_k(members, labels, ks=None, orders=16, seed=0):
    """{k: accuracy of the mean of k members}, k = 1, 2, 4, ..., T, each averaged over
    `orders` random orders of the T members (Srivastava et al. 2014, Sec. 7.5, Fig. 11)."""
    total = members.shape[0]
    if ks is None:
        ks = sorted({2**i for i in range(int(np.log2(total)) + 1)} | {total})
    rng = np.random.default_rng(seed)
    out = {k: 0.0 for k in ks}
    for _ in range(orders):
        running = np.cumsum(members[rng.permutation(total)], axis=0)
        for k in ks:
            out[k] += accuracy(running[k - 1], labels) / orders
    return out


def member_acc(members, labels):
    """member_acc = mean over members t of the accuracy of p_t alone."""
    return float(np.mean([accuracy(member, labels) for member in members]))


def disagreement(members):
    """Mean over pairs of members of the fraction of inputs whose argmax differs:
    1 - sum_c n_c (n_c - 1) / (T (T - 1)) per input, n_c = members predicting c."""
    total, _, classes = members.shape
    if total < 2:
        return 0.0
    votes = np.argmax(members, axis=-1)  # [T, n]
    counts = np.stack([(votes == c).sum(axis=0) for c in range(classes)], axis=-1)
    agree = np.sum(counts * (counts - 1), axis=-1) / (total * (total - 1))
    return float(np.mean(1.0 - agree))


def pred_entropy(members):
    """pred_entropy = mean over inputs of H[mean_t p_t] (nats)."""
    return float(np.mean(_entropy(members.mean(axis=0))))


def expected_entropy(members):
    """expected_entropy = mean over inputs of mean_t H[p_t] (nats)."""
    return float(np.mean(_entropy(members)))


def mutual_info(members):
    """mutual_info = pred_entropy - expected_entropy: the epistemic part ("BALD",
    Houlsby et al. 2011; Gal & Ghahramani 2016). 0 for identical members."""
    return max(0.0, pred_entropy(members) - expected_entropy(members))


def ece(probabilities, labels, bins=ECE_BINS):
    """Expected calibration error, 15 equal-width confidence bins:
    sum_b (n_b / n) |accuracy_b - mean confidence_b|, confidence = max probability."""
    confidence = np.max(probabilities, axis=-1)
    correct = np.argmax(probabilities, axis=-1) == labels
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def n_eff(members, labels=None):
    """Effective ensemble size T / (1 + (T - 1) rho), rho = mean pairwise Pearson
    correlation over the probe of the members' true-class probabilities (without labels:
    of the probability of the ensemble's predicted class). 1 = all members alike,
    T = independent members, above T for negatively correlated ones; NaN when rho sits at
    its floor -1 / (T - 1) (members that cancel out exactly: no finite size). Two members
    with no variance correlate 1 if equal, else 0."""
    total = members.shape[0]
    if total < 2:
        return 1.0
    classes = labels if labels is not None else np.argmax(members.mean(axis=0), axis=-1)
    picked = np.take_along_axis(members, np.broadcast_to(np.asarray(classes)[None, :, None],
                                                         members.shape[:2] + (1,)), axis=-1)[..., 0]
    centred = picked - picked.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.sum(centred**2, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (centred @ centred.T) / np.outer(norms, norms)
    flat = np.isclose(norms, 0.0)
    same = np.all(np.isclose(picked[:, None, :], picked[None, :, :]), axis=-1)
    rho = np.where(flat[:, None] | flat[None, :], same.astype(float), rho)
    off_diagonal = rho[~np.eye(total, dtype=bool)]
    mean_rho = float(np.mean(off_diagonal))
    denominator = 1.0 + (total - 1) * mean_rho
    if denominator <= 1e-12:
        # rho at its floor -1 / (T - 1): members that cancel each other out; no finite size
        return float("nan")
    return float(total / denominator)


def predictive_variance(members):
    """Regression outputs: mean over inputs and output units of Var_t(y_t) (ddof=0)."""
    return float(np.mean(np.var(members, axis=0)))


def det_mc_mse(members, deterministic):
    """det_mc_mse = mean over inputs and output units of (mean_t y_t - y_det)^2: for a
    regression output, how far the Monte-Carlo average is from the deterministic
    prediction."""
    members, deterministic = np.asarray(members, np.float64), np.asarray(deterministic, np.float64)
    return float(np.mean((members.mean(axis=0) - deterministic) ** 2))


def regression_measures(members, deterministic):
    """The measures of a regression output, {name: value}: `pred_var`, `det_mc_mse`."""
    return {PRED_VAR: predictive_variance(np.asarray(members, np.float64)),
            DET_MC_MSE: det_mc_mse(members, deterministic)}


def drop_frac(zeroed, inputs):
    """drop_frac_measured = (inputs the Dropout's mask zeroed) / (inputs it saw), over the
    Monte-Carlo samples; its expectation is the nominal `rate`."""
    return float(zeroed / inputs) if inputs else float("nan")


def _declare(name, doc, unit, headline=False, scope=OUTPUT):
    return declare(name, table=TABLE_ENSEMBLE, scope=scope, unit=unit, doc=doc, headline=headline)


DET_MC_KL = _declare("det_mc_kl", det_mc_kl, NATS)
DISAGREEMENT = _declare("disagreement", disagreement, FRACTION, headline=True)
PRED_ENTROPY = _declare("pred_entropy", pred_entropy, NATS)
EXPECTED_ENTROPY = _declare("expected_entropy", expected_entropy, NATS)
MUTUAL_INFO = _declare("mutual_info", mutual_info, NATS, headline=True)
N_EFF = _declare("n_eff", n_eff, UNITLESS, headline=True)
DET_ACC = _declare("det_acc", "det_acc = accuracy of the deterministic (weight-scaled) "
                   "network's prediction on the probe: " + accuracy.__doc__, FRACTION)
MC_ACC = _declare("mc_acc", "mc_acc = accuracy of the Monte-Carlo average mean_t p_t (Gal & "
                  "Ghahramani 2016): " + accuracy.__doc__, FRACTION, headline=True)
DET_NLL = _declare("det_nll", "det_nll: the deterministic prediction's " + nll.__doc__, NATS)
MC_NLL = _declare("mc_nll", "mc_nll: the Monte-Carlo average's " + nll.__doc__, NATS)
MEMBER_ACC = _declare("member_acc", member_acc, FRACTION)
DET_ECE = _declare("det_ece", "det_ece: the deterministic prediction's " + ece.__doc__, FRACTION)
MC_ECE = _declare("mc_ece", "mc_ece: the Monte-Carlo average's " + ece.__doc__, FRACTION)
ENS_GAP = _declare("ens_gap", "ens_gap = mc_acc - det_acc: how much the ensemble the single "
                   "network stands for beats it (Srivastava et al. 2014).", UNITLESS,
                   headline=True)
DET_ONLY_CORRECT = _declare("det_only_correct", "Probe samples the deterministic network "
                            "gets right and the Monte-Carlo average wrong (McNemar's "
                            "discordant pair, `regaudit.answer.statistics.mcnemar_exact`).", COUNT)
MC_ONLY_CORRECT = _declare("mc_only_correct", "Probe samples the Monte-Carlo average gets "
                           "right and the deterministic network wrong (McNemar's other "
                           "discordant pair).", COUNT)
PROBE_SAMPLES = _declare("probe_samples", "The probe samples the paired counts are over.",
                         COUNT)
PROBE_POSITIONS = _declare("probe_positions", "For a per-position head (a sequence "
                           "labeller): the positions that counted (not padding, not the "
                           "loss's ignore_class, not weighted 0); positions of one sequence "
                           "are not independent, so no paired counts are kept.", COUNT)
ACC_AT_K = _declare("acc_at_k:<k>", acc_at_k, FRACTION)
PRED_VAR = _declare("pred_var", "pred_var = mean over inputs and output units of Var_t(y_t) "
                    "(ddof=0): a regression output's predictive variance over the members.",
                    AS_LOGGED, headline=True)
DET_MC_MSE = _declare("det_mc_mse", det_mc_mse, AS_LOGGED)
#: measure -> its value with only one noise source (group) on, at train end
ONLY = {name: _declare(f"{name}_only", f"`{name}` of the ensemble with only this noise source "
                       "(or group of sources) on, at train end: which source creates the "
                       "diversity.", unit, headline=name != PRED_VAR, scope=SOURCE)
        for name, unit in ((DISAGREEMENT, FRACTION), (MUTUAL_INFO, NATS), (PRED_VAR, AS_LOGGED))}


def classification_measures(members, deterministic, labels=None, seed=0):
    """Every classification measure of the section, {name: value}; `acc_at_k` as
    `acc_at_k:<k>` entries. Label-free measures only when `labels` is None."""
    out = {
        DET_MC_KL: det_mc_kl(members, deterministic),
        DISAGREEMENT: disagreement(members),
        PRED_ENTROPY: pred_entropy(members),
        EXPECTED_ENTROPY: expected_entropy(members),
        MUTUAL_INFO: mutual_info(members),
        N_EFF: n_eff(members, labels),
    }
    if labels is None:
        return out
    mean = members.mean(axis=0)
    out.update({
        DET_ACC: accuracy(deterministic, labels),
        MC_ACC: accuracy(mean, labels),
        DET_NLL: nll(deterministic, labels),
        MC_NLL: nll(mean, labels),
        MEMBER_ACC: member_acc(members, labels),
        DET_ECE: ece(deterministic, labels),
        MC_ECE: ece(mean, labels),
    })
    out[ENS_GAP] = out[MC_ACC] - out[DET_ACC]
    det_right = np.argmax(deterministic, axis=-1) == labels
    mc_right = np.argmax(mean, axis=-1) == labels
    # the paired counts of McNemar's test (regaudit.answer.statistics.mcnemar_exact)
    out[DET_ONLY_CORRECT] = float(np.sum(det_right & ~mc_right))
    out[MC_ONLY_CORRECT] = float(np.sum(mc_right & ~det_right))
    out[PROBE_SAMPLES] = float(len(labels))
    for k, value in acc_at_k(members, labels, seed=seed).items():
        out[fill(ACC_AT_K, k=k)] = value
    return out
