"""The documentation: the site builds with no broken link, the README's links resolve,
and every lint rule, finding and measure regaudit produces is documented (and nothing
documented that does not exist)."""

import glob
import html
import inspect
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCS = os.path.join(ROOT, "docs")


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built as CI builds it: `mkdocs build --strict`."""
    folder = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "-d", str(folder)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    page = lambda name: (folder / name / "index.html").read_text(encoding="utf-8")  # noqa: E731
    page.folder = folder
    return page


def test_the_site_builds_strictly(site):
    api, cli = site("api"), site("cli")
    assert "write_timeout" in api and "reestimate_batchnorm" in api
    for command in ("report", "show", "lint", "study", "sync", "runs", "demo"):
        assert f"regaudit {command}" in cli


def test_every_public_name_is_on_the_api_page(site):
    import regaudit

    api = read("docs", "api.md")
    rendered = set(re.findall(r"^::: regaudit\.[\w.]*\.(\w+)\s*$", api, re.M))
    assert set(regaudit.__all__) - {"__version__"} <= rendered
    page = site("api")
    for name in rendered:
        assert f"<code>{name}</code>" in page, name


def test_every_link_of_the_readme_resolves():
    text = read("README.md")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert "docs/index.md" in local and len(local) > 10
    missing = [link for link in local if not os.path.exists(os.path.join(ROOT, link))]
    assert not missing
    assert len(text.splitlines()) <= 200


def _ids_in_source(pattern):
    found = set()
    for path in glob.glob(os.path.join(ROOT, "regaudit", "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as handle:
            found.update(re.findall(pattern, handle.read()))
    return found


def _documented(page, pattern):
    return set(re.findall(pattern, read("docs", page)))


def test_every_lint_rule_is_documented_and_every_documented_one_exists(site):
    from regaudit.model.lint_rules import RULE_IDS, RULES

    page = site("lint")
    assert set(RULE_IDS) == set(re.findall(r"<td>(RA1\d\d)</td>", page))
    for rule in RULES:
        assert f"<code>{rule.__name__}</code>" in page and inspect.getdoc(rule)
    # prose may name a rule only if it exists
    assert _documented("lint.md", r"\bRA1\d\d\b") <= set(RULE_IDS)


def test_every_registered_measure_is_on_the_measures_page(site):
    from regaudit.measures.registry import SCOPES, measures

    page = html.unescape(site("measures"))
    declared = measures()
    assert len(declared) > 60
    for measure in declared.values():
        assert f"<code>{measure.name}</code>" in page, measure.name
        assert measure.scope in SCOPES and measure.summary and measure.unit


def _expand(ids):
    """RA251-RA257 as a range of ids."""
    out = set()
    for low, high in re.findall(r"RA(2\d\d)-RA(2\d\d)", ids):
        out.update(f"RA{n}" for n in range(int(low), int(high) + 1))
    return out | set(re.findall(r"\bRA2\d\d\b", ids))


def test_every_finding_is_documented_and_every_documented_one_exists(site):
    from regaudit.answer.finding import finding_rules

    declared = {i for rule in finding_rules() for i in rule.ids}
    in_code = _ids_in_source(r"\"(RA2\d\d)\"")
    assert in_code and in_code == declared  # every id a rule emits is declared, and back
    page = html.unescape(site("reports"))
    documented = _expand(" ".join(re.findall(r"<td>(RA2[^<]*)</td>", page)))
    assert documented == declared
    for rule in finding_rules():
        assert rule.summary and inspect.getdoc(rule)


def test_every_measure_a_run_logs_is_declared(tmp_path, monkeypatch):
    import keras
    from mlflow.tracking import MlflowClient

    from regaudit import RegAudit, load_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("REGAUDIT_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.chdir(tmp_path)  # a SQLite store puts its artifacts in ./mlruns: not the clone's
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dropout(0.3), keras.layers.BatchNormalization(),
                              keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    callback = RegAudit(report=False, gradient_ics=True)
    model.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0, callbacks=[callback])
    client = MlflowClient()
    run = load_run(callback.run_id, client)
    logged = set()
    for table in ("activations", "shift", "ensemble"):
        logged.update(getattr(run, table)["measure"].unique())
    logged.update(key.rsplit("/", 1)[1] for key in client.get_run(callback.run_id).data.metrics
                  if key.startswith("regaudit/"))
    from regaudit.measures.registry import lookup

    unregistered = sorted(name for name in logged if lookup(name) is None)
    assert not unregistered, f"measures logged but not declared in the registry: {unregistered}"
    names = {name.split(":")[0] for name in logged}
    assert {"mean", "drift_w1", "tv_p", "bn_var_ratio", "mc_acc", "acc_at_k",
            "drop_frac_measured", "ics_cos", "audit_seconds"} <= names
    # documented: every declared measure is on the measures page (the test above)


def test_every_markdown_list_renders_as_a_list(site):
    """A list written right under a paragraph line (as docstrings write them) renders as
    a list, not as run-on text of the paragraph: no page's paragraph holds a line that
    starts with a list marker."""
    pages = sorted(site.folder.glob("**/index.html"))
    assert len(pages) >= len(glob.glob(os.path.join(DOCS, "*.md")))
    run_on = []
    for path in pages:
        for paragraph in re.findall(r"<p>(.*?)</p>", path.read_text(encoding="utf-8"), re.S):
            if re.search(r"\n\s*(?:[-*+]|\d+\.)\s", paragraph):
                run_on.append((path.parent.name, paragraph[:80]))
    assert not run_on
    measures = site("measures")
    assert "<li><code>dead_frac</code>" in measures  # the docstring's list, as a list


#: the extras of pyproject.toml that install a backend, and the backend each names
BACKEND_EXTRAS = {"cpu": "tensorflow", "gpu": "tensorflow", "tensorflow": "tensorflow", "jax": "jax",
                  "torch": "torch"}


def _backends_named(text):
    """The backends a page tells its reader to install (`pip install ".[jax]"`)."""
    extras = re.findall(r'pip install "\.\[([\w,]+)\]"', text)
    return {BACKEND_EXTRAS[e] for found in extras for e in found.split(",") if e in BACKEND_EXTRAS}


def test_the_landing_page_the_readme_and_the_backends_page_name_the_same_backends():
    pages = {"README.md": read("README.md"), "docs/index.md": read("docs", "index.md"),
             "docs/backends.md": read("docs", "backends.md")}
    named = {page: _backends_named(text) for page, text in pages.items()}
    assert named == {page: {"tensorflow", "jax", "torch"} for page in pages}
    for page, text in pages.items():  # and none says one of them is not supported
        assert not re.search(r"(?:JAX|PyTorch|TensorFlow)[^.]*\bnot\s+(?:yet\s+)?supported", text), page
