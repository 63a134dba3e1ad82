"""Run a Python script as on a machine without TensorFlow: `import tensorflow` raises
ModuleNotFoundError (Keras' own optional imports then see it missing, as they would).

    python without_tensorflow.py script.py args...
"""

import importlib.abc
import runpy
import sys


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return None


sys.meta_path.insert(0, _NoTensorFlow())
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
