"""What one fit measures: the measure families on the compiled probe pass, each audit's
context built and handed to them (`Measurement`)."""

import time

from regaudit.schema import MODEL, TABLE_ACTIVATIONS
from regaudit.measures.timing import AUDIT_SECONDS

from regaudit.callbacks.audit.context import AuditContext, measure_families
from regaudit.callbacks.probe.stochastic import kept_seed_state


class Measurement:
    """The fit's families, its probe pass once set up, and what the audits measured.

    Args:
        families: the measure families (`regaudit.callbacks.families.base.Family`), one
            instance each for this fit.
        settings: the callback arguments the families read (`context.Settings`).
        guards: the audit's `Guards`.

    Attributes:
        probe_pass: the compiled `ProbePass`, None until set up (or when no probe can run).
        needs: what the families need of the pass ("train_probe", "twin").
        audits: one {"epoch", "step", "seconds"} per audit written.
        last_context: the last audit's `AuditContext`, for the families' `finish`.
    """

    def __init__(self, families, settings, guards):
        self.families = families
        self.settings = settings
        self.guards = guards
        self.needs = set().union(*(family.needs for family in families))
        self.probe_pass = None
        self.audits = []
        self.last_context = None

    def audit(self, model, epoch, step, run_id, set_tags, gradient_ics_due, write=True):
        """One audit: the probe pass, then every family on its context. Returns
        ({table: rows}, {(layer, measure): value}) with the audit's own cost, or None when
        the pass failed or the audit is not written (`write=False`: measured only for the
        families' state, as the drift baseline of a resumed fit)."""
        started = time.perf_counter()
        result = self.guards.step("probe pass", self.probe_pass.run, "twin" in self.needs)
        if result is None:
            return None
        context = AuditContext(
            model=model, probe_pass=self.probe_pass, result=result, settings=self.settings,
            epoch=epoch, step=step, run_id=run_id, guard=self.guards.guarded,
            switched_off=self.guards.off, set_tags=set_tags, gradient_ics_due=gradient_ics_due)
        self.last_context = context
        if not write:
            for family in self.families:
                self.guards.guarded(MODEL, family.name, family.measure, context)
            return None
        tables, metrics = {}, {}
        for measured in measure_families(self.families, context, self.guards.guarded):
            family_tables, family_metrics = measured if measured is not None else ({}, {})
            for table, rows in family_tables.items():
                tables.setdefault(table, []).extend(rows)
            metrics.update(family_metrics)
        seconds = time.perf_counter() - started
        # the audit's own cost, in the table and as regaudit/model/audit_seconds
        tables.setdefault(TABLE_ACTIVATIONS, []).append(context.row(MODEL, "Model", AUDIT_SECONDS, seconds))
        metrics[(MODEL, AUDIT_SECONDS)] = seconds
        self.audits.append({"epoch": epoch, "step": step, "seconds": seconds})
        return tables, metrics

    def finish(self, model):
        """At train end, every family's `finish` on the last audit's context:
        [(tables, metrics, context)]; none before any audit."""
        context = self.last_context
        if context is None:
            return []
        done = []
        for family in self.families:
            with kept_seed_state(model):
                out = self.guards.guarded(MODEL, f"{family.name} at train end", family.finish, context)
            tables, metrics = out if out is not None else ({}, {})
            done.append((tables, metrics, context))
        return done
