"""The measures: their definitions (one function each), the registry that declares them."""
