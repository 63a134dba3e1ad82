"""On `PYTHONPATH`, every Python process started with it (and its children: Ray's
workers, pytest's) runs as on a machine without TensorFlow: no import finder finds
`tensorflow`, so `import tensorflow` raises ModuleNotFoundError and
`importlib.util.find_spec("tensorflow")` is None, as where it is not installed."""

import sys


def _hidden(name):
    return name == "tensorflow" or name.startswith("tensorflow.")


class _Hiding:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if _hidden(name) or not hasattr(self.finder, "find_spec"):
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, attribute):
        return getattr(self.finder, attribute)


sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
