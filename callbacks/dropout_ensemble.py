"""`DropoutEnsemble`: the implicit ensemble Dropout trains, sampled with Monte-Carlo
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

from regaudit.callbacks.audit.arguments import ARGUMENTS_DOC
from regaudit.callbacks.audit.hooks import Audit
from regaudit.callbacks.probe.choice import ProbeData



#: at most this many "only this one on" ensembles at train end (each costs T forward
#: passes over the ensemble probe); a model with more sources is grouped by the first
#: component of their paths (a Transformer's blocks), then cut to this many groups
MAX_SOURCE_GROUPS = 16


def _output_layers(model):
    """The layer producing each flattened model output (None where unknown: a subclassed
    model)."""
    layers = []
    for tensor in keras.tree.flatten(getattr(model, "outputs", None) or []):
        history = getattr(tensor, "_keras_history", None)
        layers.append(history[0] if history else None)
    return layers


def _loss_of(loss, index, name):
    """The compiled loss of output `index` (named `name`): a list's index-th, a dict's
    entry, else the loss itself; as (name, from_logits, ignore_class)."""
    if isinstance(loss, dict):
        loss = loss.get(name)
    elif isinstance(loss, (list, tuple)):
        loss = loss[index] if index < len(loss) else None
    if loss is None:
        return None, None, None
    if isinstance(loss, str):
        return loss, None, None
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    from_logits = getattr(loss, "from_logits", config.get("from_logits"))
    ignore_class = getattr(loss, "ignore_class", config.get("ignore_class"))
    return getattr(loss, "__name__", type(loss).__name__), from_logits, ignore_class


def output_heads(model, det, targets=None):
    """The head of every flattened output (`regaudit.measures.heads.head_kind`), from the loss
    `compile` was given and the output layer's activation; `det`: the deterministic
    outputs, for their widths. A per-position binary head whose targets are not all 0 or
    1 (a VAE's or an autoencoder's pixel intensities under binary cross-entropy) is a
    `regression`: there is no class to be right about."""
    targets = targets or [None] * len(det)
    names = list(getattr(model, "output_names", None) or [])
    layers = _output_layers(model)
    heads = []
    for index, values in enumerate(det):
        name = names[index] if index < len(names) else None
        loss_name, from_logits, _ = _loss_of(getattr(model, "loss", None), index, name)
        layer = layers[index] if index < len(layers) else None
        activation = getattr(getattr(layer, "activation", None), "__name__", None)
        # the classes are the last axis, after any sequence or spatial axes
        units = values.shape[-1] if values.ndim >= 2 else None
        head = heads_module.head_kind(loss_name, from_logits, activation, units)
        target = targets[index] if index < len(targets) else None
        if head.startswith("binary") and values.ndim > 2 and target is not None \
                and not np.all(np.isin(np.asarray(target), (0, 1))):
            head = "regression"
        heads.append(head)
    return heads


def _targets(model, targets, outputs):
    """The probe's targets paired with the flattened outputs: by name for a dict, by
    position for a list (None where there is none)."""
    if targets is None:
        return [None] * outputs
    if isinstance(targets, dict):
        names = list(getattr(model, "output_names", None) or [])
        return [targets.get(name) for name in names[:outputs]] + [None] * (outputs - len(names))
    flat = keras.tree.flatten(targets)
    return flat if len(flat) == outputs else [None] * outputs


def _ignore_class(model, index):
    """The compiled loss's `ignore_class` for output `index` (None if it has none)."""
    names = list(getattr(model, "output_names", None) or [])
    name = names[index] if index < len(names) else None
    return _loss_of(getattr(model, "loss", None), index, name)[2]


def _labels(target, classes):
    target = np.asarray(target)
    if target.ndim >= 2 and target.shape[-1] == classes and classes > 2:
        return np.argmax(target, axis=-1)  # one-hot
    if target.ndim >= 2 and target.shape[-1] == classes == 2 and np.all(np.isin(target, (0, 1))) \
            and np.all(target.sum(-1) == 1):
        return np.argmax(target, axis=-1)  # one-hot over two classes
    return np.rint(target.reshape(len(target))).astype(np.int64)


def source_groups(sources, limit=MAX_SOURCE_GROUPS):
    """[(group name, [source indices])]: each source alone up to `limit` sources, else
    grouped by the first component of their paths, and at most `limit` groups."""
    if len(sources) <= limit:
        return [(source.name, [i]) for i, source in enumerate(sources)]
    groups = {}
    for i, source in enumerate(sources):
        groups.setdefault(source.name.split("/")[0], []).append(i)
    return list(groups.items())[:limit]


class EnsembleFamily:
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
        probe, size = context.probe_pass.probe, context.settings.ensemble_probe_size
        take = lambda a: a[:size]  # noqa: E731
        targets = None if probe.targets is None else keras.tree.map_structure(take, probe.targets)
        weights = None if probe.weights is None else keras.tree.map_structure(take, probe.weights)
        return ProbeData(keras.tree.map_structure(take, probe.inputs), targets, probe.source,
                         probe.indices[:size], weights)

    def _present(self, context):
        if context.probe_pass.noise_sources:
            return True
        if not self.announced:
            self.announced = True
            warnings.warn(
                f"regaudit: model '{context.model.name}' has no noise source with a nonzero "
                "rate (no Dropout-family layer, attention dropout or RNN dropout, anywhere "
                "in it), so there is no dropout ensemble to measure; the dropout-ensemble "
                "measures are skipped.", RegauditWarning, stacklevel=2)
        return False

    def _output_measures(self, context, probe, det, members):
        """{(output label, measure): value} for every model output."""
        targets = _targets(context.model, probe.targets, len(det))
        if self.heads is None:
            self.heads = output_heads(context.model, det, targets)
            model_class = type(context.model).__name__
            context.set_tags({f"{TAG_PREFIX}heads": ",".join(
                heads_module.describe_head(head, d.shape, model_class) for head, d in zip(self.heads, det))})
        weights = _targets(context.model, probe.weights, len(det))
        masks = context.probe_pass.output_masks
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
                labels = None if targets[i] is None else _labels(targets[i], p_det.shape[-1])
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
                                          _ignore_class(context.model, index), weights)
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
        sampled = context.measure(MODEL, "mc_sampling", context.probe_pass.run_ensemble,
                                  context.settings.mc_samples, None, probe)
        if sampled is None:
            return {}, {}
        det, members, counts = sampled
        values = self._output_measures(context, probe, det, members)
        for source, (numerator, denominator) in zip(context.probe_pass.noise_sources, counts):
            values[(source.name, source.measure)] = ensemble.drop_frac(numerator, denominator)
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
            for tap in context.probe_pass.all_taps:
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
        sources = context.probe_pass.noise_sources
        rows, metrics = [], {}
        for name, members_of_group in source_groups(sources):
            active = np.zeros(len(sources), np.float32)
            active[members_of_group] = 1.0
            det, members, _ = context.probe_pass.run_ensemble(context.settings.mc_samples, active, probe)
            per_source = self._output_measures(context, probe, det[:1], members[:1])
            for measure, only in ensemble.ONLY.items():
                if (MODEL, measure) in per_source:
                    value = per_source[(MODEL, measure)]
                    rows.append(context.row(name, self._layer_class(context, name), only, value))
                    if is_headline(only):
                        metrics[(name, only)] = value
        return ({TABLE_ENSEMBLE: rows} if rows else {}), metrics


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
