"""Where the fit is, as the audit's schedule counts it (`Clock`): the epoch, the optimizer
step the epoch began at, the last step bucket audited, and whether the first step is
still ahead."""


class Clock:
    """The fit's position for the schedule.

    Args:
        steps: a step schedule's period (`Every(steps=N)`), None for an epoch schedule.

    Attributes:
        epoch: the epoch running now.
        base_step: the optimizer step at the start of this epoch (or at its end, after
            `on_epoch_end`).
        bucket: the last `step // steps` audited.
        before_first_step: True until the first epoch begins (`fit(initial_epoch=)` and
            `BackupAndRestore` are known only then).
    """

    def __init__(self, steps=None):
        self.steps = steps
        self.epoch = 0
        self.base_step = 0
        self.bucket = 0
        self.before_first_step = True

    def start(self, step):
        """The fit's first step is `step` (a resumed fit's optimizer iterations)."""
        self.before_first_step = False
        self.base_step = step
        self.bucket = step // (self.steps or 1)

    def crossed(self, batch):
        """The optimizer step of `batch` when it enters a new bucket of `steps` (a bucket
        crossed, not step % N == 0: with steps_per_execution > 1 Keras calls the batch
        hooks only every few steps), else None."""
        step = self.base_step + batch
        if step // self.steps > self.bucket:
            self.bucket = step // self.steps
            return step
        return None
