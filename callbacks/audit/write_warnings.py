"""What the audit says about its writes, each thing once per fit: writes kept in the
spool, writes the store refused for good (set aside), writes nothing could keep, and a
spool nearing its size bound."""

import os
import warnings

from regaudit.errors import RegauditWarning
from regaudit.tracking.run_opening import is_pending

#: share of the spool's size bound at which the audit warns that it is filling up
SPOOL_WARN_SHARE = 0.8


class WriteWarnings:
    def __init__(self):
        self.spooled = self.refused = self.lost = 0
        self.filling = False

    def after_writes(self, writer, stacklevel=3):
        # the spool's own id: a run created from a pending one keeps its pending journal
        run_id = writer.spool.run_id
        if writer.spooled and not self.spooled:
            reason = writer.last_error or ("the run is not created yet" if is_pending(writer.run_id) else "")
            warnings.warn(
                f"regaudit: MLflow did not take the audit's writes ({reason}); they are kept in "
                f"the local spool {writer.spool.path} and replayed at the next audit and at "
                f"train end (or with `regaudit sync {run_id}`); training goes on.",
                RegauditWarning, stacklevel=stacklevel)
        self.spooled = writer.spooled
        if writer.refused and not self.refused:
            warnings.warn(
                f"regaudit: MLflow refused {writer.refused} audit write(s) for good "
                f"({writer.last_refusal}); they are kept aside in "
                f"{os.path.join(writer.spool.root, 'refused')}, not retried, and the other "
                "writes go on.", RegauditWarning, stacklevel=stacklevel)
        self.refused = writer.refused
        if writer.lost and not self.lost:
            warnings.warn(
                f"regaudit: the local spool cannot keep audit writes ({writer.spool_error}); "
                f"{writer.lost} write(s) are lost while MLflow is away. Free disk space, or set "
                "REGAUDIT_SPOOL_DIR to a writable folder or REGAUDIT_SPOOL_MAX_MB higher; "
                "training goes on.", RegauditWarning, stacklevel=stacklevel)
        self.lost = writer.lost
        if not self.filling and writer.spool.usage() >= SPOOL_WARN_SHARE:
            self.filling = True
            warnings.warn(
                f"regaudit: the local spool {writer.spool.root} is {writer.spool.usage():.0%} "
                "full (REGAUDIT_SPOOL_MAX_MB); when it is full, audit writes made while MLflow "
                "is away are lost. Run `regaudit sync` once the server is back.",
                RegauditWarning, stacklevel=stacklevel)

    def report_waits(self, run_id):
        warnings.warn(
            f"regaudit: the train-end report of run {run_id} waits until its spooled writes "
            f"reach MLflow; `regaudit sync` sends them and then logs the report.",
            RegauditWarning, stacklevel=3)
