"""`DropoutEnsemble`: the implicit ensemble Dropout trains, sampled with Monte-Carlo
dropout and set against the single weight-scaled network Keras uses at inference
(MEASURES.md section 3)."""

import warnings

import keras
import numpy as np

from regaudit import ensemble
from regaudit.errors import RegauditWarning
from regaudit.schema import MODEL, TABLE_ENSEMBLE

from regaudit.callbacks.audit import ARGUMENTS_DOC, Audit
from regaudit.callbacks.graph import is_graph_model
from regaudit.callbacks.probe import ProbeData

#: Ensemble measures logged as MLflow metrics (model level and per Dropout layer).
HEADLINE_MODEL = ("mc_acc", "ens_gap", "disagreement", "mutual_info", "n_eff", "pred_var")
HEADLINE_LAYER = ("drop_frac_measured",)
#: Logged at train end for every Dropout layer: which layer creates the diversity.
HEADLINE_FINAL = ("mutual_info_only", "disagreement_only")


def _output_activations(model):
    """The activation name of the layer producing each flattened model output (or None)."""
    names = []
    for tensor in keras.tree.flatten(getattr(model, "outputs", None) or []):
        history = getattr(tensor, "_keras_history", None)
        layer = history[0] if history else None
        names.append(getattr(getattr(layer, "activation", None), "__name__", None))
    return names


def _labels(target, classes):
    target = np.asarray(target)
    if target.ndim >= 2 and target.shape[-1] == classes and classes > 1:
        return np.argmax(target, axis=-1)  # one-hot
    return target.reshape(len(target)).astype(np.int64)


def _as_probabilities(det, members, activation):
    """(det, members) as class probabilities, or None for a regression output."""
    if det.ndim != 2:
        return None
    if det.shape[-1] == 1 and (activation == "sigmoid" or (activation is None and det.min() >= 0 and det.max() <= 1)):
        return np.concatenate([1 - det, det], -1), np.concatenate([1 - members, members], -1)
    rows_sum_to_one = np.allclose(det.sum(-1), 1.0, atol=1e-3) and det.min() >= 0
    if det.shape[-1] > 1 and (activation == "softmax" or rows_sum_to_one):
        return det, members
    return None


class EnsembleFamily:
    """Monte-Carlo dropout measures at every audit; per-Dropout-layer ensembles and the
    accuracy-against-k plot at the end of training."""

    name = "ensemble"
    needs = frozenset()

    def __init__(self):
        self.announced = False
        self.last = None

    def _probe(self, callback):
        probe, size = callback.probe_pass.probe, callback.ensemble_probe_size
        take = lambda a: a[:size]  # noqa: E731
        targets = None if probe.targets is None else keras.tree.map_structure(take, probe.targets)
        return ProbeData(keras.tree.map_structure(take, probe.inputs), targets, probe.source,
                         probe.indices[:size])

    def _present(self, callback):
        if callback.probe_pass.dropout_taps:
            return True
        if not is_graph_model(callback.model):
            return False  # the subclassed-model warning already said why
        if not self.announced:
            self.announced = True
            warnings.warn(
                f"regaudit: model '{callback.model.name}' has no Dropout layer, so there is "
                "no dropout ensemble to measure; the dropout-ensemble measures are skipped.",
                RegauditWarning, stacklevel=2)
        return False

    def _output_measures(self, callback, probe, det, members):
        """{(output label, measure): value} for every model output."""
        activations = _output_activations(callback.model)
        targets = [] if probe.targets is None else keras.tree.flatten(probe.targets)
        out = {}
        for i, (d, m) in enumerate(zip(det, members)):
            label = MODEL if len(det) == 1 else f"{MODEL}:{i}"
            d, m = d.astype(np.float64), m.astype(np.float64)
            probabilities = _as_probabilities(d, m, activations[i] if i < len(activations) else None)
            if probabilities is None:
                out[(label, "pred_var")] = ensemble.predictive_variance(m)
                out[(label, "det_mc_mse")] = float(np.mean((m.mean(axis=0) - d) ** 2))
                continue
            p_det, p_members = probabilities
            labels = _labels(targets[i], p_det.shape[-1]) if len(targets) == len(det) else None
            for name, value in ensemble.classification_measures(
                    p_members, p_det, labels, seed=callback.seed).items():
                out[(label, name)] = value
        return out

    def measure(self, context):
        callback = context.callback
        if not self._present(callback):
            return {}, {}
        probe = self._probe(callback)
        sampled = context.measure(MODEL, "mc_sampling", callback.probe_pass.run_ensemble,
                                  callback.mc_samples, None, probe)
        if sampled is None:
            return {}, {}
        det, members, counts = sampled
        values = self._output_measures(callback, probe, det, members)
        for name, (zeroed, nonzero) in zip(callback.probe_pass.dropout_taps, counts):
            values[(name, "drop_frac_measured")] = ensemble.drop_frac(zeroed, nonzero)
        rows = [callback.row(context, layer, self._layer_class(callback, layer), measure, value)
                for (layer, measure), value in values.items()]
        self.last = (context, values)
        metrics = {key: v for key, v in values.items()
                   if (key[0].startswith(MODEL) and key[1] in HEADLINE_MODEL)
                   or (not key[0].startswith(MODEL) and key[1] in HEADLINE_LAYER)}
        return {TABLE_ENSEMBLE: rows}, metrics

    @staticmethod
    def _layer_class(callback, layer):
        for tap in callback.probe_pass.all_taps:
            if tap.name == layer:
                return tap.layer_class
        return "Model"

    def finish(self, callback):
        """At train end: for each Dropout layer, the ensemble with only that layer on
        (its `disagreement` and `mutual_info`: which layer creates the diversity), stored
        with the last audit. (The accuracy-against-k plot, regaudit/plots/acc_at_k.png,
        comes with the train-end report.)"""
        if self.last is None:
            return
        context, values = self.last
        probe = self._probe(callback)
        taps = callback.probe_pass.dropout_taps
        rows, metrics = [], {}
        for index, name in enumerate(taps):
            active = np.eye(len(taps), dtype=np.float32)[index]
            det, members, _ = callback.probe_pass.run_ensemble(callback.mc_samples, active, probe)
            per_layer = self._output_measures(callback, probe, det[:1], members[:1])
            for measure in ("disagreement", "mutual_info", "pred_var"):
                if (MODEL, measure) in per_layer:
                    value = per_layer[(MODEL, measure)]
                    rows.append(callback.row(context, name, self._layer_class(callback, name),
                                             f"{measure}_only", value))
                    if f"{measure}_only" in HEADLINE_FINAL:
                        metrics[(name, f"{measure}_only")] = value
        if rows:
            callback.write_tables({TABLE_ENSEMBLE: rows})
            callback.write_metrics(metrics, context)


class DropoutEnsemble(Audit):
    """Measures the implicit ensemble Dropout trains (Srivastava et al. 2014) on the probe
    at every audit: T Monte-Carlo samples with only the Dropout layers on (Gal &
    Ghahramani 2016), through a twin of the model that shares its layer objects and draws
    its own stateless masks, so the model's dropout seed state and BatchNormalization
    statistics never move. The T samples run batched in one call per probe chunk.
    Records accuracy and NLL of the deterministic (weight-scaled) network and of the MC
    average, the gap between them, accuracy of the mean of k samples (`acc_at_k:<k>`),
    single-member accuracy, disagreement, predictive and expected entropy, mutual
    information, calibration (ECE), the effective ensemble size `n_eff`, and per Dropout
    layer the measured drop fraction; at train end, each Dropout layer's own
    `disagreement_only` / `mutual_info_only` and an accuracy-against-k plot. Without
    labels only the label-free measures; regression outputs get the predictive variance.

    Defaults keep the audit cheap: T = `mc_samples` = 8 on the first
    `ensemble_probe_size` = 128 probe samples at every audit (k = 1, 2, 4, 8 on the
    accuracy-against-k curve); `mc_samples=32` or more draws the curve further for T
    times the cost of one forward pass over those samples.

    Example:

    ```python
    model.fit(x, y, validation_split=0.1, callbacks=[DropoutEnsemble(mc_samples=32)])
    ```
    """

    family_types = (EnsembleFamily,)


DropoutEnsemble.__doc__ += ARGUMENTS_DOC
