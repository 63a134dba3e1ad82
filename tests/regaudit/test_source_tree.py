"""The clone's root behaves as the installed package: with only the source tree on
sys.path (no site-packages, so no editable install's finder can help), `regaudit.callbacks`
and `regaudit.reports` resolve to the top-level `callbacks/` and `reports/` folders, as a
script run from the clone's root and Ray's workers (the driver's directory first on their
sys.path) find them."""

import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

FIND = """
import importlib.util, json
import regaudit
print(json.dumps({name: importlib.util.find_spec("regaudit." + name).origin
                  for name in ("callbacks", "reports", "cli", "studies")}))
"""


def test_the_source_tree_resolves_callbacks_and_reports_as_the_installed_package_does(tmp_path):
    import json

    # -S: no site-packages (no installed or editable regaudit); -I would drop the cwd too
    done = subprocess.run([sys.executable, "-S", "-c", FIND], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PATH": os.environ.get("PATH", "")})
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found == {"callbacks": os.path.join(ROOT, "callbacks", "__init__.py"),
                     "reports": os.path.join(ROOT, "reports", "__init__.py"),
                     "cli": os.path.join(ROOT, "regaudit", "cli", "__init__.py"),
                     "studies": os.path.join(ROOT, "regaudit", "studies", "__init__.py")}
    # elsewhere, with the source tree not on the path, nothing of it leaks in
    elsewhere = subprocess.run([sys.executable, "-S", "-c", "import regaudit"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
    assert "No module named 'regaudit'" in elsewhere.stderr
