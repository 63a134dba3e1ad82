"""`Family`: what every measure family is to the audit.

A family is a small object the audit makes once per fit (`Audit.family_types`). At every
audit it receives an `regaudit.callbacks.audit.context.AuditContext`, its whole
interface to the audit (the pass's summaries, the probe, the taps, the model, the
settings, a guard for each measure, a row maker), and returns rows of tidy tables and
headline metrics; the audit writes them. No family touches the callback.
"""


class Family:
    """Base of the measure families.

    Attributes:
        name: the family's name (meta.json, a failing family's warning).
        needs: what the probe pass must also compute for it, among "train_probe" (the
            training probe beside the validation one) and "twin" (BN inputs' moments with
            every noise source on).
    """

    name = "family"
    needs = frozenset()

    def on_host(self, context):
        """Whether this audit's `measure` only computes on the host from the pass's
        summaries (it never calls the model): such a family runs beside those that call
        the model (`context.measure_families`)."""
        return False

    def measure(self, context):
        """At every audit: `(tables, metrics)`, {table: [rows]} and {(layer, measure): value}."""
        raise NotImplementedError(f"{type(self).__name__} defines no measure(context)")

    def finish(self, context):
        """At train end, with the last audit's context: `(tables, metrics)`; none by default."""
        return {}, {}
