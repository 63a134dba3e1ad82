"""Run names, tags, layer names and values crafted to attack the report (HTML, Markdown,
formula-looking cells, enormous strings) are shown as text, in HTML and in Markdown."""

import keras
import mlflow
from mlflow.tracking import MlflowClient

from regaudit import RegAudit
from regaudit.read import load_runs
from regaudit.reports.report import build_report

HTML = '<img src=x onerror="alert(1)">'
MARKDOWN = "**bold** | `code` [link](http://evil.example) ![img](http://evil.example/x.png)"
FORMULA = '=HYPERLINK("http://evil.example","click")'
HUGE = "A" * 50_000


def test_crafted_names_tags_and_layers_are_text(tmp_path, rng):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu", name="x_img_onerror"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(2, activation="softmax")],
                             name="m_" + "z" * 400)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    with mlflow.start_run(run_name=HTML) as run:
        mlflow.set_tag("team", MARKDOWN + FORMULA + HUGE)
        model.fit(rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, 32), epochs=1,
                  validation_split=0.25, verbose=0, callbacks=[RegAudit(probe_size=8, mc_samples=2, report=False)])
    MlflowClient().set_tag(run.info.run_id, "regaudit.setup", FORMULA + HTML)
    runs = load_runs([run.info.run_id])
    html_report = build_report(runs, str(tmp_path / "r.html"), group_by="team")
    text = (tmp_path / "r.html").read_text()
    assert "<img" not in text.replace('<img src="data:image/png', "")  # only the figures' own
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in text
    assert "evil.example" in text and 'href="http://evil' not in text and "<a " not in text
    assert HUGE[:8000] not in text and "... (8,000 characters)" in text  # cut, saying how long it was
    build_report(runs, str(tmp_path / "r.md"), fmt="md", group_by="team")
    markdown = (tmp_path / "r.md").read_text()
    assert "<img" not in markdown and "&lt;img" in markdown
    assert "\\*\\*bold\\*\\*" in markdown and "\\[link\\]" in markdown and "\\| \\`code\\`" in markdown
    assert "=HYPERLINK" in markdown and HUGE not in markdown
    assert html_report.findings
