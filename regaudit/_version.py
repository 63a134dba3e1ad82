"""The regaudit version, read by pyproject.toml and `regaudit --version`."""

__version__ = "0.1.0"
