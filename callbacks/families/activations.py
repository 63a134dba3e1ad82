"""The activation family: every activation measure of every tap on the probe, a 64-bin
histogram per tap (docs/measures.md, section 1)."""

import numpy as np

from regaudit.measures.activations import ACTIVATION_MEASURES, DEAD_FRAC, histogram, model_summary, relu_output
from regaudit.measures.registry import is_headline
from regaudit.schema import HISTOGRAM_COLUMNS, MODEL, TABLE_ACTIVATIONS, TABLE_HISTOGRAMS

from regaudit.callbacks.families.base import Family


class ActivationFamily(Family):
    """Every measure of `regaudit.measures.activations.ACTIVATION_MEASURES` for every tap, a
    64-bin histogram per tap, and the headline ones (`regaudit.measures.registry`) as metrics."""

    name = "activations"
    needs = frozenset()

    def on_host(self, context):
        return True  # every measure is computed from the pass's summaries

    def measure(self, context):
        rows, histograms, values = [], [], {}
        relu = self._relu_outputs(context.all_taps)
        for tap in context.taps:
            summary = context.summaries[tap.name]
            for measure, function in ACTIVATION_MEASURES.items():
                if measure == DEAD_FRAC and not relu.get(tap.name):
                    continue  # "units that never fire" means nothing for a softmax or a BN
                value = context.guarded(tap.name, measure, function, summary)
                if value is None:
                    continue
                values[(tap.name, measure)] = value
                rows.append(context.row(tap.name, tap.layer_class, measure, value))
            counted = context.guarded(tap.name, "histogram", histogram, summary)
            if counted is not None:
                histograms.extend(self._histogram_rows(context, tap, *counted))
        summary_values = model_summary(values)
        rows.extend(context.row(MODEL, "Model", m, v) for m, v in summary_values.items())
        metrics = {key: value for key, value in values.items() if is_headline(key[1])}
        metrics.update({(MODEL, m): v for m, v in summary_values.items() if is_headline(m)})
        return {TABLE_ACTIVATIONS: rows, TABLE_HISTOGRAMS: histograms}, metrics

    @staticmethod
    def _relu_outputs(taps):
        """{tap name: True} for the taps whose output is ReLU-like (a ReLU-family
        activation or layer): where dead units arise. A pooling, Dropout or Flatten after
        one passes the same dead channels on (Flatten as position x channel units), so it
        would only name them again."""
        return {tap.name: True for tap in taps if relu_output(tap.activation, tap.layer_class)}

    @staticmethod
    def _histogram_rows(context, tap, counts, edges):
        base = context.row(tap.name, tap.layer_class, None, None)
        return [
            dict(zip(HISTOGRAM_COLUMNS, (
                base["run"], base["epoch"], base["step"], base["probe"], tap.name,
                tap.layer_class, index, float(edges[index]), float(edges[index + 1]),
                int(count),
            )))
            for index, count in enumerate(np.asarray(counts))
        ]
