"""Which layers an audit measures (`layers=`) and which get MLflow metrics.

`LayerSelection(spec)` takes what a user would write: a regular expression matched whole
against a layer's name (`"conv2_block1_.*"`; a plain name is a pattern that matches
itself), a Keras layer class (`keras.layers.BatchNormalization`: that class and its
subclasses), or a list or tuple mixing both. A nested model's layer is named
`outer/inner`; a pattern may match that or the inner layer's own name.

The layers whose headline measures become MLflow metrics are at most MAX_METRIC_LAYERS
(`max_metric_layers=`), evenly spaced along the graph (`regaudit.schema.evenly_spaced`),
so the number of metric keys per run stays bounded whatever the model's size (every
measure of every layer is still in the Parquet tables).
"""

import re

from regaudit.errors import UsageError

#: at most this many layers get per-layer MLflow metrics by default
MAX_METRIC_LAYERS = 32


class LayerSelection:
    """A predicate over (tap name, layer object); see the module docstring."""

    def __init__(self, spec):
        items = list(spec) if isinstance(spec, (list, tuple, set)) else [spec]
        if not items:
            raise UsageError(
                "regaudit: layers= expects layer names, regular expressions or layer classes; "
                "received an empty list. Leave layers= out to measure every layer.")
        self.spec = spec
        self.patterns, self.classes = [], []
        for item in items:
            if isinstance(item, str):
                try:
                    self.patterns.append(re.compile(item))
                except re.error as error:
                    raise UsageError(
                        f"regaudit: layers= item {item!r} is not a valid regular expression "
                        f"({error}); escape it with re.escape() to match a name literally.") from None
            elif isinstance(item, re.Pattern):
                self.patterns.append(item)
            elif isinstance(item, type):
                self.classes.append(item)
            else:
                raise UsageError(
                    f"regaudit: layers= expects layer names, regular expressions or layer "
                    f"classes; received {item!r} ({type(item).__name__}). Example: "
                    "layers=[keras.layers.BatchNormalization, 'dense.*'].")

    def __call__(self, name, layer):
        base = name.split(":")[0]
        return any(isinstance(layer, cls) for cls in self.classes) or any(
            bool(p.fullmatch(name) or p.fullmatch(base) or p.fullmatch(getattr(layer, "name", "")))
            for p in self.patterns)

    def describe(self):
        """The selection as the user wrote it, for messages and meta.json."""
        return [getattr(i, "pattern", None) or getattr(i, "__name__", str(i))
                for i in (self.spec if isinstance(self.spec, (list, tuple, set)) else [self.spec])]
