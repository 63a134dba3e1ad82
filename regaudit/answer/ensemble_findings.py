"""RA230/RA231: the dropout ensemble the model trained, against the single weight-scaled
network Keras predicts with, judged on the same probe samples (a paired test)."""

from regaudit.answer.levels import NOTICE
from regaudit.answer import outcomes
from regaudit.measures.ensemble import ACC_AT_K, DET_ACC, DET_ONLY_CORRECT, MC_ACC, MC_ONLY_CORRECT, PROBE_SAMPLES
from regaudit.answer.finding import Finding, finding_rule, names_text, p_text
from regaudit.measures.registry import prefix
from regaudit.schema import MODEL
from regaudit.answer.statistics import holm, level, mcnemar_exact


def _gain_text(name, gain, top_k, counts):
    """RA230's sentence for a significant difference, either way."""
    if gain > 0:
        return (f"In run {name} Monte-Carlo dropout at inference would gain {gain:.3f} accuracy "
                f"at T = {top_k} ({counts}). Predict with the mean of {top_k} passes with only "
                "the Dropout layers in training mode (BatchNormalization stays in inference mode).")
    return (f"In run {name} the weight-scaled network beats Monte-Carlo dropout by {-gain:.3f} "
            f"accuracy at T = {top_k} ({counts}): keep predicting with the weight-scaled network.")


@finding_rule("RA230", "RA231", order=100,
              summary='Monte-Carlo dropout against the weight-scaled network (exact McNemar test on the same probe samples)', evidence=(MC_ACC, DET_ACC, MC_ONLY_CORRECT, DET_ONLY_CORRECT),
              titles={"RA230": "MC dropout beats the weight-scaled network",
                      "RA231": "MC dropout vs the weight-scaled network"})
def ensemble_gain(runs, groups):
    """RA230/RA231, Monte-Carlo dropout (Gal & Ghahramani 2016) against the weight-scaled
    network Keras predicts with (Srivastava et al. 2014), at each run's last audit, on the
    same probe samples: a paired comparison, the exact McNemar test of the samples only
    one of the two gets right, Holm-corrected over runs. Worth acting on (RA230) only when
    significant; otherwise one line of agreement (RA231) with n."""
    ens = runs.ensemble
    det, mc = outcomes.final(ens, DET_ACC), outcomes.final(ens, MC_ACC)
    det_only, mc_only = outcomes.final(ens, DET_ONLY_CORRECT), outcomes.final(ens, MC_ONLY_CORRECT)
    count = outcomes.final(ens, PROBE_SAMPLES)
    ks = ens[(ens.layer == MODEL) & ens.measure.str.startswith(prefix(ACC_AT_K))].measure
    top_k = int(ks.str.split(":").str[1].astype(int).max()) if len(ks) else None
    names = outcomes.run_names(runs)
    tested = [r for r in det if r in mc and r in det_only and r in mc_only]
    untested = [names.get(r, r) for r in det if r in mc and r not in tested]
    out = []
    if tested:
        raw = [mcnemar_exact(det_only[r], mc_only[r]) for r in tested]
        adjusted = holm(raw)
        agree = []
        for run, p, p_holm in zip(tested, raw, adjusted):
            gain = mc[run] - det[run]
            n = int(count.get(run, 0))
            numbers = {"run": run, DET_ACC: det[run], MC_ACC: mc[run], "gain": gain, "n": n,
                       MC_ONLY_CORRECT: int(mc_only[run]), DET_ONLY_CORRECT: int(det_only[run]),
                       "p": p, "p_holm": float(p_holm), "T": top_k}
            counts = (f"{mc[run]:.3f} against {det[run]:.3f} on n = {n} probe samples; "
                      f"{int(mc_only[run])} right only with MC, {int(det_only[run])} only with the "
                      f"weight-scaled network; exact McNemar {p_text(p)}, Holm-adjusted "
                      f"{p_text(p_holm)} over {len(tested)} run{'s' if len(tested) > 1 else ''}")
            if p_holm < level():
                out.append(Finding("RA230", "ensemble_gain",
                                   _gain_text(names.get(run, run), gain, top_k, counts), numbers,
                                   NOTICE, about=f"run {names.get(run, run)}",
                                   brief=f"accuracy {gain:+.3f} with Monte-Carlo dropout, Holm-adjusted "
                                   f"{p_text(p_holm)}", weight=abs(gain)))
            else:
                agree.append((names.get(run, run), n, gain, p_holm))
        if agree:
            out.append(Finding(
                "RA231", "ensemble_agreement",
                "No detectable difference between Monte-Carlo dropout and the weight-scaled "
                "network (exact McNemar, Holm-corrected) in " + names_text(
                    [f"{name} (gain {gain:+.3f}, n = {n}, {p_text(p)})" for name, n, gain, p in agree],
                    separator="; ")
                + ". That is not agreement: whether they agree within 0.01 is the last claim's "
                "question (RA257).", {"runs": [a[0] for a in agree]},
                about=f"{len(agree)} run{'s' if len(agree) > 1 else ''}",
                brief="no detectable difference (exact McNemar, Holm-corrected)"))
    if untested:
        out.append(Finding(
            "RA231", "ensemble_agreement",
            "Runs " + names_text(untested) + " have no paired counts for McNemar's test (runs "
            "older than the counts, or a per-position head, whose positions in one sequence "
            "are not independent samples): their Monte-Carlo and weight-scaled accuracies "
            "are in the overview, untested.",
            {"runs": untested}, about=f"{len(untested)} run{'s' if len(untested) > 1 else ''}",
            brief="no paired counts: untested"))
    return out
