"""What the audit and the fit cost in wall time: the two bookkeeping measures regaudit
logs beside what it measures."""

from regaudit.measures.registry import EPOCH, MODEL_WIDE, SECONDS, declare
from regaudit.schema import TABLE_ACTIVATIONS, TABLE_HISTORY

AUDIT_SECONDS = declare(
    "audit_seconds", table=TABLE_ACTIVATIONS, scope=MODEL_WIDE, unit=SECONDS, headline=True,
    doc="""audit_seconds = the wall time of one audit (the probe pass, every measure family,
    not the MLflow writes, which run in the background): what regaudit cost the fit at
    that audit.""")
EPOCH_SECONDS = declare(
    "epoch_seconds", table=TABLE_HISTORY, scope=EPOCH, unit=SECONDS,
    doc="""epoch_seconds = the wall time of one epoch, from `on_epoch_begin` to
    `on_epoch_end` (audits at epoch ends included), beside Keras' epoch logs.""")
