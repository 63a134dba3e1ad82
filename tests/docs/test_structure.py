"""The code's shape, as the contributor page promises it: one home per name (a measure's
name, a finding's or a lint rule's id is a string literal in exactly one module: its
declaration), small modules and functions, no reaching into another module's private
names, and dependencies that point one way (the core never imports the Keras callbacks
or the reports, except where the command line and the public entry points assemble them)."""

import ast
import glob
import os
import re
from collections import defaultdict

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGES = ("regaudit", "callbacks", "reports")
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60
#: where the core assembles itself with the Keras side and the reports: the package's
#: lazy public names and the commands (whole modules), and the user's entry points that
#: train or render (these functions only): `regaudit.study` and its Ray trainable, the
#: notebook views of runs and studies
ASSEMBLERS = ("regaudit/__init__.py", "regaudit/cli/")
ENTRY_POINTS = {
    "regaudit/studies/__init__.py": {"study", "check", "report", "_repr_html_"},
    "regaudit/studies/estimate.py": {"time_one_trial"},
    "regaudit/studies/run.py": {"_trainable"},
    "regaudit/read.py": {"_repr_html_"},
}


def sources():
    for package in PACKAGES:
        for path in sorted(glob.glob(os.path.join(ROOT, package, "**", "*.py"), recursive=True)):
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            yield os.path.relpath(path, ROOT).replace(os.sep, "/"), text, ast.parse(text)


def _docstrings(tree):
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _literal_modules(wanted):
    """{literal: modules where it is a string constant (docstrings left out)}."""
    where = defaultdict(set)
    for path, _, tree in sources():
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docs and wanted(node.value)):
                where[node.value].add(path)
    return where


def test_every_measure_name_is_a_literal_in_its_declaration_only():
    from regaudit.measures.registry import measures

    declared = measures()
    where = _literal_modules(lambda text: text in declared)
    elsewhere = {name: sorted(paths) for name, paths in where.items()
                 if paths != {declared[name].module.replace(".", "/") + ".py"}}
    assert len(where) > 50  # the rest are made by templates (`acc_at_k:<k>`, `*_only`)
    assert not elsewhere, f"measure names typed outside their declaration: {elsewhere}"


def test_every_finding_and_lint_rule_id_is_a_literal_in_one_module():
    where = _literal_modules(lambda text: re.fullmatch(r"RA\d\d\d", text) is not None)
    assert len(where) > 30
    shared = {rule: sorted(paths) for rule, paths in where.items() if len(paths) != 1}
    assert not shared, f"rule ids typed in several modules: {shared}"


def test_no_module_or_function_is_too_long():
    long_modules, long_functions = [], []
    for path, text, tree in sources():
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append((path, len(text.splitlines())))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append((path, node.name, length))
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"


def _imports(tree, allowed=frozenset()):
    """(module, name) of every import, except inside the functions named in `allowed`."""
    skip = {id(inner) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in allowed
            for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                yield node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None


def test_no_module_imports_another_modules_private_name():
    private = [(path, module, name) for path, _, tree in sources()
               for module, name in _imports(tree)
               if name and name.startswith("_") and not name.startswith("__")
               and module.startswith("regaudit")]
    assert not private, f"private names imported from another module: {private}"


def test_the_core_imports_callbacks_and_reports_only_where_it_assembles_them():
    side = ("regaudit.callbacks", "regaudit.reports")
    crossing = []
    for path, _, tree in sources():
        if not path.startswith("regaudit/") or path.startswith(ASSEMBLERS):
            continue
        for module, name in _imports(tree, ENTRY_POINTS.get(path, frozenset())):
            target = module if module != "regaudit" or name is None else f"regaudit.{name}"
            if target.startswith(side):
                crossing.append((path, target))
    assert not crossing, f"core modules importing the Keras side or the reports: {crossing}"
