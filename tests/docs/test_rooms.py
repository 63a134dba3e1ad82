"""The rooms of the code, as the contributor page maps them: `callbacks/` holds the public
callbacks and subpackages by job, backend code lives in one home, classes are composed
rather than mixed in and stay small, and imports point one way (function-level imports
counted: a cycle hidden inside a function is still a cycle)."""

import ast
import os
import re

from tests.docs.test_structure import ROOT, sources

#: the backend's home: no other module asks which backend runs or imports a framework
BACKENDS = ("callbacks/backends/",)
FRAMEWORKS = {"tensorflow", "jax", "jaxlib", "torch"}
MAX_TOP_MODULES = 6
MAX_ATTRIBUTES = 20


def _module_name(path):
    """`regaudit.callbacks.probe.twin` for callbacks/probe/twin.py (installed names)."""
    parts = path[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts[0] in ("callbacks", "reports"):
        parts = ["regaudit"] + parts
    return ".".join(parts)


def _lazy_nodes(path, tree):
    """The imports of a package `__init__`'s `__getattr__`: its lazy public names."""
    if not path.endswith("__init__.py"):
        return set()
    return {id(node) for top in tree.body if isinstance(top, ast.FunctionDef) and top.name == "__getattr__"
            for node in ast.walk(top)}


def import_graph():
    """{module: {modules it imports}}, every import counted (at module level or inside a
    function), package `__init__` lazy names aside."""
    trees = {_module_name(path): (path, tree) for path, _, tree in sources()}
    graph = {}
    for name, (path, tree) in trees.items():
        lazy, targets = _lazy_nodes(path, tree), set()
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in lazy:
                continue
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                    + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in trees else base)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    module = alias.name
                    while module and module not in trees:
                        module = module.rpartition(".")[0]
                    targets.add(module)
        graph[name] = {t for t in targets if t in trees and t != name}
    return graph


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_callbacks_holds_the_public_callbacks_and_rooms_by_job():
    top = sorted(name for name in os.listdir(os.path.join(ROOT, "callbacks")) if name.endswith(".py"))
    rooms = sorted(name for name in os.listdir(os.path.join(ROOT, "callbacks"))
                   if os.path.isfile(os.path.join(ROOT, "callbacks", name, "__init__.py")))
    assert len(top) <= MAX_TOP_MODULES, f"modules directly in callbacks/: {top}"
    assert {"audit", "backends", "families", "probe", "study", "demo"} <= set(rooms), rooms


def _backend_switches(tree):
    """(line, what) of every framework import and backend question in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FRAMEWORKS:
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in FRAMEWORKS:
            yield node.lineno, f"from {node.module} import"
        elif isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in ("is_tensorflow", "backend"):
                yield node.lineno, f"{called}()"
        elif isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if isinstance(side, ast.Constant) and side.value in FRAMEWORKS:
                    yield node.lineno, f"== {side.value!r}"
                if isinstance(side, (ast.Name, ast.Attribute)) and \
                        (getattr(side, "id", None) or getattr(side, "attr", None)) == "NAME":
                    yield node.lineno, "NAME =="


def test_no_backend_switch_or_framework_import_outside_the_backends_folder():
    found = [(path, line, what) for path, _, tree in sources()
             if path.startswith(("callbacks/", "regaudit/")) and not path.startswith(BACKENDS)
             for line, what in _backend_switches(tree)]
    assert not found, f"backend code outside callbacks/backends/: {found}"


def test_the_backend_modules_have_the_same_names():
    import importlib

    names = {}
    for module in ("tensorflow", "jax", "torch"):
        with open(os.path.join(ROOT, "callbacks", "backends", f"{module}.py"), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        exported = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                        and getattr(node.targets[0], "id", None) == "__all__")
        names[module] = {element.value for element in exported.elts}
        defined = {getattr(n, "name", None) for n in tree.body} | {
            getattr(t, "id", None) for n in tree.body if isinstance(n, ast.Assign) for t in n.targets} | {
            alias.asname or alias.name for n in tree.body if isinstance(n, ast.ImportFrom) for alias in n.names}
        assert names[module] <= defined, f"backends/{module}.py exports undefined {names[module] - defined}"
    assert names["tensorflow"] == names["jax"] == names["torch"], names
    chosen = importlib.import_module("regaudit.callbacks.backends").backend
    assert all(hasattr(chosen, name) for name in names["torch"])


def _classes():
    """{name: (path, own attributes, base names)}: instance attributes (`self.x = ...`)
    and class-level annotated fields (a dataclass's)."""
    classes = {}
    for path, _, tree in sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            attributes = {target.attr for sub in ast.walk(node)
                          if isinstance(sub, (ast.Assign, ast.AnnAssign, ast.AugAssign))
                          for top in (sub.targets if isinstance(sub, ast.Assign) else [sub.target])
                          for target in ast.walk(top)
                          if isinstance(target, ast.Attribute) and getattr(target.value, "id", None) == "self"}
            attributes |= {statement.target.id for statement in node.body
                           if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)}
            bases = [ast.unparse(base).rpartition(".")[2] for base in node.bases]
            classes[node.name] = (path, attributes, bases)
    return classes


def test_no_class_holds_more_than_twenty_attributes_or_two_project_bases():
    classes = _classes()

    def attributes(name, seen=()):
        path, own, bases = classes[name]
        return own.union(*(attributes(b, seen + (name,)) for b in bases if b in classes and b not in seen))

    big = {name: len(attributes(name)) for name in classes if len(attributes(name)) > MAX_ATTRIBUTES}
    mixed = {name: bases for name, (_, _, bases) in classes.items()
             if sum(base in classes for base in bases) > 1}
    assert not big, f"classes over {MAX_ATTRIBUTES} attributes (their project bases counted): {big}"
    assert not mixed, f"classes built from two or more project bases: {mixed}"


def test_no_import_cycle_among_the_projects_modules():
    graph = import_graph()
    assert len(graph) > 100 and "regaudit.callbacks.backends" in graph["regaudit.callbacks.probe.twin"]
    assert not cycles(graph), f"import cycles (function-level imports counted): {cycles(graph)}"


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_switch_finder_finds_each_kind():
    text = ("import tensorflow as tf\nfrom jax import numpy\nif backend.is_tensorflow(): pass\n"
            "if keras.backend.backend() == 'torch': pass\nif NAME == 'jax': pass\n")
    assert len({line for line, _ in _backend_switches(ast.parse(text))}) == 5
    assert not list(_backend_switches(ast.parse("import keras\nx = keras.ops.ones(2)\n")))
    assert re.fullmatch(r"regaudit\.callbacks\.probe", _module_name("callbacks/probe/__init__.py"))
