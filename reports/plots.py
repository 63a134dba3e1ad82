"""Figures of regaudit measures; each function takes tidy data and returns a Figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402


def acc_at_k_figure(curve, det_acc, member_acc=None):
    """Accuracy of the mean of k Monte-Carlo dropout samples against k (Srivastava et al.
    2014, Fig. 11), with the deterministic weight-scaled network as a line. `curve`:
    {k: accuracy}."""
    data = pd.DataFrame({"k": list(curve), "accuracy": list(curve.values())}).sort_values("k")
    figure, ax = plt.subplots(figsize=(5.5, 3.6))
    sns.lineplot(data=data, x="k", y="accuracy", marker="o", ax=ax, label="MC average of k samples")
    ax.axhline(det_acc, color="black", linestyle="--", label="weight-scaled network")
    if member_acc is not None:
        ax.axhline(member_acc, color="grey", linestyle=":", label="single subnetwork (mean)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(data["k"], labels=[str(k) for k in data["k"]])
    ax.set_xlabel("k, dropout samples averaged")
    ax.set_ylabel("probe accuracy")
    ax.set_title("Dropout ensemble against the weight-scaled network")
    ax.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure
