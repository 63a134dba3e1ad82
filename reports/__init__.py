"""The reporting side of regaudit (no TensorFlow): tables, seaborn plots, HTML/Markdown."""
