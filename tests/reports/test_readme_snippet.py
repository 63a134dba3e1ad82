"""The README's one-liner, run the way users run it: a script that ends right after `fit`,
every default on (the train-end report included). Its report and figures must be in the
run when the process has exited."""

import os
import re
import subprocess
import sys
import textwrap

from mlflow.tracking import MlflowClient

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")

USER_SETUP = textwrap.dedent("""
    import numpy as np
    import keras
    from keras import layers

    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = keras.Sequential([keras.Input((8,)), layers.Dense(16, activation="relu"),
                              layers.Dropout(0.3), layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
""")


def readme_snippet():
    text = open(README, encoding="utf-8").read()
    section = text.split("## One line in your training script", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_one_liner_in_a_script_leaves_its_report_in_the_run(tmp_path):
    snippet = readme_snippet()
    assert "callbacks=[RegAudit()]" in snippet
    script = tmp_path / "train.py"
    script.write_text(USER_SETUP + snippet, encoding="utf-8")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGAUDIT_", "MLFLOW_"))}
    env["MLFLOW_TRACKING_URI"] = uri
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cannot schedule new futures" not in result.stderr
    assert "report" not in " ".join(line for line in result.stderr.splitlines() if "regaudit:" in line)
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("Default").experiment_id])
    assert run.info.status == "FINISHED"
    reports = [a.path for a in client.list_artifacts(run.info.run_id, "regaudit/report")]
    plots = [a.path for a in client.list_artifacts(run.info.run_id, "regaudit/plots")]
    assert "regaudit/report/report.html" in reports
    assert "regaudit/plots/acc_at_k.png" in plots and len(plots) >= 4
