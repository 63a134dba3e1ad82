"""The probe and the compiled passes over it: taps, the graph walk, summaries, the twin
and the Monte-Carlo ensemble."""
