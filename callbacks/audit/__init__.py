"""The audit's lifecycle: the Keras hooks, the schedule, the arguments, the fit's run
and its writes, and what the measure families receive."""
