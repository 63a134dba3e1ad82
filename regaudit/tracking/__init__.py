"""Reaching the tracking store: runs, writes within a budget, the spool, reading runs back."""
