"""The shift family: drift over training, train vs validation, the BatchNormalization
variance shift, and (optional) gradient-based internal covariate shift
(docs/measures.md, section 2)."""

import numpy as np

from regaudit.measures import shift
from regaudit.measures.registry import is_headline
from regaudit.model.regularizers import is_batchnorm
from regaudit.schema import MODEL, TABLE_SHIFT

from regaudit.callbacks.families.base import Family
from regaudit.callbacks.families.gradient_ics import gradient_ics


class ShiftFamily(Family):
    """Covariate-shift measures for every tap; BN measures for every BatchNormalization."""

    name = "shift"
    needs = frozenset({"train_probe", "twin"})

    def __init__(self):
        self.first = None
        self.previous = None

    def on_host(self, context):
        """From the pass's summaries only, unless the gradient ICS (which steps the model's
        weights and puts them back) runs at this audit."""
        return not context.gradient_ics_due

    def measure(self, context):
        rows, values = [], {}

        def add(tap_name, layer_class, measure, function, *args, probe=None):
            value = context.guarded(tap_name, measure, function, *args)
            if value is not None:
                values[(tap_name, measure)] = value
                rows.append(context.row(tap_name, layer_class, measure, value, probe=probe))

        for tap in context.taps:
            current = context.summaries[tap.name]
            for named, reference in ((lambda m: m, self.previous), (shift.FROM_START.get, self.first)):
                if reference is not None and tap.name in reference:
                    for measure, function in shift.DRIFT_MEASURES.items():
                        add(tap.name, tap.layer_class, named(measure), function,
                            reference[tap.name], current)
            if context.train_summaries is not None:
                self._train_vs_val(context, tap, add)
            if is_batchnorm(tap.layer) and tap.name in context.batchnorm:
                self._batchnorm(context, tap, add)
        if context.gradient_ics_due:
            for layer_name, (l2, cos, layer_class) in gradient_ics(
                    context.model, context.probe, context.taps, context.settings.probe_batch_size).items():
                add(layer_name, layer_class, shift.ICS_L2, float, l2)
                add(layer_name, layer_class, shift.ICS_COS, float, cos)

        drifts = [v for (_, m), v in values.items() if m == shift.DRIFT_W1 and np.isfinite(v)]
        if drifts:
            add(MODEL, "Model", shift.DRIFT_W1_MEAN, float, np.mean(drifts))
        self.previous = context.summaries
        self.first = self.first or context.summaries
        metrics = {key: value for key, value in values.items() if is_headline(key[1])}
        return {TABLE_SHIFT: rows}, metrics

    @staticmethod
    def _train_vs_val(context, tap, add):
        train = context.train_summaries[tap.name]
        val = context.summaries[tap.name]
        probe = "train|val"
        add(tap.name, tap.layer_class, shift.TV_W1, shift.w1_scaled, train, val, probe=probe)
        add(tap.name, tap.layer_class, shift.TV_KS, shift.ks_statistic, train, val, probe=probe)
        rows = context.reservoir_index.get(tap.name)
        if rows is None:
            return
        units = tap.shape[-1] if tap.shape else 1
        train_size = context.train_probe.size
        val_size = context.probe.size
        key = ("tv_pvalues", id(train), id(val))  # an aliased tap shares both summaries
        if key not in context.memo:
            context.memo[key] = context.guarded(
                tap.name, shift.TV_P, shift.unit_pvalues, train, val,
                (rows[:train_size] % units).ravel(), (rows[:val_size] % units).ravel())
        pvalues = context.memo[key]
        if pvalues is not None:
            add(tap.name, tap.layer_class, shift.TV_P, shift.tv_p, pvalues, probe=probe)
            add(tap.name, tap.layer_class, shift.TV_UNITS_SHIFTED, shift.tv_units_shifted,
                pvalues, probe=probe)

    @staticmethod
    def _batchnorm(context, tap, add):
        layer = tap.layer
        observed = context.batchnorm[tap.name]
        moving_mean = layer.moving_mean.numpy()
        moving_variance = layer.moving_variance.numpy()
        add(tap.name, tap.layer_class, shift.BN_VAR_RATIO, shift.bn_var_ratio,
            observed.var, moving_variance)
        add(tap.name, tap.layer_class, shift.BN_MEAN_OFFSET, shift.bn_mean_offset,
            observed.mean, moving_mean, moving_variance, layer.epsilon)
        add(tap.name, tap.layer_class, shift.BN_INIT_SHARE, shift.bn_init_share,
            moving_variance, float(layer.momentum), context.step)
        if context.twin_batchnorm is not None:
            add(tap.name, tap.layer_class, shift.BN_DROPOUT_VAR_RATIO, shift.bn_dropout_var_ratio,
                context.twin_batchnorm[tap.name].var, observed.var)
        elif not context.noise_sources:
            # no noise source anywhere: the twin is the model itself, the ratio exactly 1
            add(tap.name, tap.layer_class, shift.BN_DROPOUT_VAR_RATIO, float, 1.0)
