"""The ensemble family: the implicit ensemble Dropout trains, sampled with Monte-Carlo
dropout and set against the single weight-scaled network Keras uses at inference
(docs/measures.md, section 3)."""

import warnings

import keras
import numpy as np

from regaudit.measures import ensemble
from regaudit.measures import heads as heads_module
from regaudit.errors import RegauditWarning
from regaudit.measures.registry import is_headline
from regaudit.schema import MODEL, TABLE_ENSEMBLE, TAG_PREFIX

from regaudit.callbacks.families.base import Family
from regaudit.callbacks.families.output_heads import class_labels, ignore_class, output_heads, paired_targets
from regaudit.callbacks.probe.choice import ProbeData


#: at most this many "only this one on" ensembles at train end (each costs T forward
#: passes over the ensemble probe); a model with more sources is grouped by the first
#: component of their paths (a Transformer's blocks), then cut to this many groups
MAX_SOURCE_GROUPS = 16


def source_groups(sources, limit=MAX_SOURCE_GROUPS):
    """[(group name, [source indices])]: each source alone up to `limit` sources, else
    grouped by the first component of their paths, and at most `limit` groups."""
    if len(sources) <= limit:
        return [(source.name, [i]) for i, source in enumerate(sources)]
    groups = {}
    for i, source in enumerate(sources):
        groups.setdefault(source.name.split("/")[0], []).append(i)
    return list(groups.items())[:limit]


class EnsembleFamily(Family):
    """Monte-Carlo dropout measures at every audit; per-Dropout-layer ensembles and the
    accuracy-against-k plot at the end of training."""

    name = "ensemble"
    needs = frozenset()

    def __init__(self):
        self.announced = False
        #: whether an audit measured the ensemble (finish needs one)
        self.measured = False
        #: the head of every output (`regaudit.measures.heads`), decided at the first audit
        self.heads = None

    @staticmethod
    def _probe(context):
        probe, size = context.probe, context.settings.ensemble_probe_size
        take = lambda a: a[:size]  # noqa: E731
        targets = None if probe.targets is None else keras.tree.map_structure(take, probe.targets)
        weights = None if probe.weights is None else keras.tree.map_structure(take, probe.weights)
        return ProbeData(keras.tree.map_structure(take, probe.inputs), targets, probe.source,
                         probe.indices[:size], weights)

    def _present(self, context):
        if context.noise_sources:
            return True
        if not self.announced:
            self.announced = True
            warnings.warn(
                f"regaudit: model '{context.model.name}' has no noise source with a nonzero "
                "rate (no Dropout-family layer, attention dropout or RNN dropout, anywhere "
                "in it), so there is no dropout ensemble to measure; the dropout-ensemble "
                "measures are skipped.", RegauditWarning, stacklevel=2)
        return False

    def _output_measures(self, context, probe, det, members, masks):
        """{(output label, measure): value} for every model output."""
        targets = paired_targets(context.model, probe.targets, len(det))
        if self.heads is None:
            self.heads = output_heads(context.model, det, targets)
            model_class = type(context.model).__name__
            context.set_tags({f"{TAG_PREFIX}heads": ",".join(
                heads_module.describe_head(head, d.shape, model_class) for head, d in zip(self.heads, det))})
        weights = paired_targets(context.model, probe.weights, len(det))
        out = {}
        for i, (d, m) in enumerate(zip(det, members)):
            label = MODEL if len(det) == 1 else f"{MODEL}:{i}"
            p_det = heads_module.as_probabilities(d, self.heads[i])
            if p_det is None:
                out.update({(label, name): value
                            for name, value in ensemble.regression_measures(m, d).items()})
                continue
            p_members = heads_module.as_probabilities(m, self.heads[i])
            if p_det.ndim > 2:
                measured = self._per_position(context, i, p_det, p_members, targets[i], weights[i],
                                              masks[i] if i < len(masks) else None)
            else:
                labels = None if targets[i] is None else class_labels(targets[i], p_det.shape[-1])
                measured = ensemble.classification_measures(p_members, p_det, labels,
                                                            seed=context.settings.seed)
            out.update({(label, name): value for name, value in measured.items()})
        return out

    @staticmethod
    def _per_position(context, index, p_det, p_members, target, weights, keras_mask):
        """A per-position head (`regaudit.measures.heads`): every position that is not padding (the
        Keras mask, the loss's `ignore_class`, a zero sample weight) is one
        classification. The paired McNemar counts are left out: positions of one sequence
        are not independent, so a test over positions would overstate the evidence;
        `probe_positions` says how many positions counted."""
        positions = p_det.shape[:-1]
        labels = None if target is None else heads_module.position_labels(
            target, positions, p_det.shape[-1])
        keep = heads_module.position_mask(positions, keras_mask, labels,
                                          ignore_class(context.model, index), weights)
        measured = ensemble.classification_measures(
            p_members[:, keep], p_det[keep], None if labels is None else labels[keep],
            seed=context.settings.seed)
        for paired in (ensemble.DET_ONLY_CORRECT, ensemble.MC_ONLY_CORRECT, ensemble.PROBE_SAMPLES):
            measured.pop(paired, None)
        measured[ensemble.PROBE_POSITIONS] = float(keep.sum())
        return measured

    def measure(self, context):
        if not self._present(context):
            return {}, {}
        probe = self._probe(context)
        sampled = context.guarded(MODEL, "mc_sampling", context.run_ensemble,
                                  context.settings.mc_samples, None, probe)
        if sampled is None:
            return {}, {}
        det, members, counts, masks = sampled
        values = self._output_measures(context, probe, det, members, masks)
        for source, (numerator, denominator) in zip(context.noise_sources, counts):
            values[(source.name, source.drop_measure)] = ensemble.drop_frac(numerator, denominator)
        rows = [context.row(layer, self._layer_class(context, layer), measure, value)
                for (layer, measure), value in values.items()]
        self.measured = True
        metrics = {key: v for key, v in values.items() if is_headline(key[1])}
        return {TABLE_ENSEMBLE: rows}, metrics

    @staticmethod
    def _layer_class(context, layer):
        """The class of the layer a source or group belongs to (an RNN source is named
        `<layer>/dropout`: the RNN layer's class)."""
        for name in (layer, layer.rpartition("/")[0]):
            for tap in context.all_taps:
                if tap.name == name:
                    return tap.layer_class
        return "Model"

    def finish(self, context):
        """At train end: for each noise source (grouped by path past MAX_SOURCE_GROUPS),
        the ensemble with only that source on (its `disagreement` and `mutual_info`: which
        source creates the diversity), stored with the last audit. (The
        accuracy-against-k plot, regaudit/plots/acc_at_k.png, comes with the train-end
        report.)"""
        if not self.measured:
            return {}, {}
        probe = self._probe(context)
        sources = context.noise_sources
        rows, metrics = [], {}
        for name, members_of_group in source_groups(sources):
            active = np.zeros(len(sources), np.float32)
            active[members_of_group] = 1.0
            det, members, _, masks = context.run_ensemble(context.settings.mc_samples, active, probe)
            per_source = self._output_measures(context, probe, det[:1], members[:1], masks[:1])
            for measure, only in ensemble.ONLY.items():
                if (MODEL, measure) in per_source:
                    value = per_source[(MODEL, measure)]
                    rows.append(context.row(name, self._layer_class(context, name), only, value))
                    if is_headline(only):
                        metrics[(name, only)] = value
        return ({TABLE_ENSEMBLE: rows} if rows else {}), metrics
