"""When audits run: a plain callable from a count of epochs or steps to bool."""

from dataclasses import dataclass

from regaudit.errors import UsageError


@dataclass(frozen=True)
class Every:
    """Audit every `epochs` epochs or every `steps` training steps (one of the two), and
    before the first training step when `at_start` (the reference for drift measures).

    Example: `RegAudit(schedule=Every(steps=100))`.
    """

    epochs: int | None = None
    steps: int | None = None
    at_start: bool = True

    def __post_init__(self):
        given = [(name, value) for name, value in (("epochs", self.epochs), ("steps", self.steps)) if value is not None]
        if len(given) != 1:
            raise UsageError(
                f"regaudit: Every() takes exactly one of epochs= or steps=; received "
                f"epochs={self.epochs!r}, steps={self.steps!r}."
            )
        name, value = given[0]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"regaudit: Every({name}=...) expects a positive int; received {name}={value!r}.")

    @property
    def unit(self):
        return "epoch" if self.epochs is not None else "step"

    def __call__(self, count):
        """True when an audit is due after `count` completed epochs (or steps)."""
        every = self.epochs if self.epochs is not None else self.steps
        return count > 0 and count % every == 0


def as_schedule(schedule, name="schedule", also=""):
    """`"epoch"` (every epoch), an `Every`, or a callable epoch -> bool; `name` is the
    argument the value came in and `also` what else it accepts, for the error."""
    if schedule == "epoch":
        return Every(epochs=1)
    if isinstance(schedule, Every):
        return schedule
    if callable(schedule):
        return _EpochCallable(schedule)
    raise UsageError(
        f"regaudit: {name} expects {also}'epoch', Every(epochs=N), Every(steps=N) or a callable "
        f"epoch -> bool; received {name}={schedule!r}."
    )


@dataclass(frozen=True)
class _EpochCallable:
    function: object
    at_start: bool = True
    unit: str = "epoch"

    def __call__(self, count):
        return bool(self.function(count))


def planned_audits(schedule, params):
    """How many audits a fit will run: the one before the first step (`at_start`) and
    those `schedule` makes due over Keras' `params` (`epochs`, `steps` per epoch); None
    when they are not known in advance (a user's callable could do anything, or Keras
    does not know the steps per epoch)."""
    epochs, steps = (params or {}).get("epochs"), (params or {}).get("steps")
    if not isinstance(schedule, Every) or not epochs:
        return None
    if schedule.unit == "epoch":
        due = epochs // schedule.epochs
    elif steps:
        due = (epochs * steps) // schedule.steps
    else:
        return None
    return due + int(schedule.at_start)
