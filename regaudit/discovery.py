"""Where declarations live, found rather than listed.

A measure (`regaudit.measures.registry.declare`) or a finding rule
(`regaudit.answer.finding.finding_rule`) is declared where it is computed, in whichever
core module that is; the registries import every module that declares, so the
documentation, the report and the structure tests see them all. A new module that
declares is found by reading the package's sources for the declaration, with nothing to
edit anywhere else.
"""

import functools
import importlib
import os
import re

#: the core package's folder (regaudit/); the Keras side and the reports declare nothing
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_SKIPPED = {"callbacks", "reports", "__pycache__"}


@functools.lru_cache(maxsize=None)
def declaring_modules(pattern):
    """The dotted names of the core modules whose source matches the regular expression
    `pattern`, the `regaudit.measures` package first, then by name.

    Args:
        pattern: a regular expression a declaring module's source matches (its import
            of the declaring function, or the decorator).

    Returns:
        A tuple of module names, such as `regaudit.measures.activations` (read once per
        process).
    """
    found = []
    for folder, folders, files in os.walk(_PACKAGE):
        folders[:] = sorted(name for name in folders if name not in _SKIPPED)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as handle:
                if re.search(pattern, handle.read()) is None:
                    continue
            module = os.path.relpath(path, os.path.dirname(_PACKAGE))[:-3].replace(os.sep, ".")
            found.append(module.removesuffix(".__init__"))
    return tuple(sorted(found, key=lambda module: (not module.startswith("regaudit.measures."), module)))


def import_declaring(pattern):
    """Import every core module whose source matches `pattern` (`declaring_modules`)."""
    for module in declaring_modules(pattern):
        importlib.import_module(module)
