"""The measure families: what each audit computes from the probe pass."""
