"""What an audit sets up at train begin: the probe pass, the layers logged as metrics,
the run's tags and files (model.json, lint.json, meta.json), the run opened."""

import warnings


from regaudit import __version__
from regaudit.errors import RegauditWarning, UsageError
from regaudit.schema import (SCHEMA_VERSION, TAG_PREFIX, evenly_spaced)
from regaudit.model.tags import regularization_tags

from regaudit.callbacks.backends import keras_internals as internals
from regaudit.callbacks.lint import train_lint
from regaudit.callbacks.audit.describe import layer_table, meta
from regaudit.callbacks.probe.probe_pass import ProbePass
from regaudit.callbacks.probe.taps import NO_BATCH_AXIS
from regaudit.callbacks.probe.choice import ProbeUnavailable, choose_probe, choose_train_probe
from regaudit.callbacks.audit.schedule import planned_audits
from regaudit.callbacks.audit.run_opener import RunOpener, in_background


class SetsUpTheAudit:
    """The audit's set-up at train begin (a mixin of `regaudit.callbacks.audit.hooks.Audit`)."""

    def _setup(self):
        self.probe_pass = self._probe_pass()
        self._metric_layers = set()
        if self.probe_pass is not None:
            self._check_selection()
            self._metric_layers = set(evenly_spaced([t.name for t in self.probe_pass.taps],
                                                    self.max_metric_layers))
            self._metric_layers.update(self.probe_pass.dropout_taps)
            # a group of sources (train-end ensembles of a model with many) is named by
            # its path's first component
            self._metric_layers.update(name.split("/")[0] for name in self.probe_pass.dropout_taps)
            self._warn_unmeasured()
        layers = layer_table(self.model, self.probe_pass, self._metric_layers)
        tags = {TAG_PREFIX + k: v for k, v in regularization_tags(layers).items()}
        probe = None if self.probe_pass is None else self.probe_pass.probe
        tags.update({
            TAG_PREFIX + "version": __version__,
            TAG_PREFIX + "schema_version": SCHEMA_VERSION,
            TAG_PREFIX + "probe_source": "none" if probe is None else probe.source,
            TAG_PREFIX + "probe_size": 0 if probe is None else probe.size,
            TAG_PREFIX + "step_unit": self.schedule.unit,
            # the train-end report is due: `regaudit sync` logs it if the store was away
            TAG_PREFIX + "report": "1" if self.report else "0",
        })
        lint, lint_tags = train_lint(layers, self.params, connected=self.probe_pass is not None)
        tags.update({TAG_PREFIX + k: v for k, v in lint_tags.items()})
        files = [("model.json", {"model": self.model.name, "layers": layers})]
        files += [("lint.json", lint)] if lint is not None else []
        files.append(("meta.json", meta(self)))
        self._measuring = self.probe_pass is not None
        self._active = True
        #: whether this fit's run opened in the background (`regaudit.callbacks.audit.run_opener`)
        self.opened_in_background = in_background()
        if self.opened_in_background:  # the run opens as the model trains
            self._opener = RunOpener(lambda: self._open_run(tags, files, activate=False))
        else:
            self._take_run(self._open_run(tags, files, activate=True))

    def _probe_pass(self):
        """The compiled probe pass, or None (with one warning saying what is still
        logged) when the model cannot be called for inference or no probe can be drawn
        without changing training."""
        what = ("Keras' epoch logs (history) and the regularization tags are still logged; "
                "training goes on.")
        if not internals.defines_call(self.model):
            warnings.warn(
                f"regaudit: {type(self.model).__name__} defines no call() (it trains through "
                "train_step), so regaudit cannot run it on a probe: no activation, shift or "
                f"dropout-ensemble measure for this fit. {what} Give the model a call() "
                "method to have it measured.", RegauditWarning, stacklevel=3)
            return None
        try:
            probe = choose_probe(self.model, self.probe, self.probe_size, self.seed)
        except ProbeUnavailable as error:
            warnings.warn(f"{error} {what}", RegauditWarning, stacklevel=3)
            return None
        self._needs = set().union(*(family.needs for family in self.families))
        self.train_probe = None
        if "train_probe" in self._needs and probe.source == "val":
            self.train_probe = choose_train_probe(self.model, probe.size, self.seed + 1)
        return ProbePass(self.model, probe, self.probe_batch_size, self.seed,
                         train_probe=self.train_probe, select=self.layers,
                         planned_audits=planned_audits(self.schedule, self.params),
                         twin="twin" in self._needs)

    def _check_selection(self):
        taps = self.probe_pass.taps
        if self.layers is not None and not taps:
            names = ", ".join(t.name for t in self.probe_pass.all_taps[:12])
            raise UsageError(
                f"regaudit: layers={self.layers.describe()} matched no layer of model "
                f"'{self.model.name}'; expected names, patterns or classes of its layers "
                f"({names}{', ...' if len(self.probe_pass.all_taps) > 12 else ''}).")

    def _warn_unmeasured(self):
        """Say once which layer outputs are not measured and why (`taps.UNMEASURED_REASONS`:
        an output whose first axis is not the batch, an integer output); model.json and the
        report's layer table say it per layer."""
        parts = []
        for reason, names in self.probe_pass.unmeasured.items():
            listed = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            why = "their first axis is not the batch" if reason == NO_BATCH_AXIS else f"of type: {reason}"
            parts.append(f"{len(names)} because {why} ({listed})")
        if parts:
            count = sum(len(names) for names in self.probe_pass.unmeasured.values())
            warnings.warn(
                f"regaudit: {count} layer output(s) of model '{self.model.name}' are not measured: "
                f"{'; '.join(parts)}; every other layer call is.", RegauditWarning, stacklevel=3)
