"""`regaudit study` as a user runs it: the CLI in a subprocess, Ray started locally, every
trial an audited MLflow run in a SQLite store; resumed after an interruption with every
trial's run exactly once; bad input in one line; and on a real two-node Ray cluster on
127.0.0.1 (`ray start --head` and a second `ray start --address`, one CPU each) into one
SQLite-backed `mlflow server`, the trials on both nodes. One file: the cluster and the
local Ray never run at once."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("ray", reason="regaudit study needs Ray Tune: pip install 'regaudit[study]'")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reliability"))
from servers import Server, _free_port  # noqa: E402

USER_CODE = textwrap.dedent('''
    import numpy as np


    def data():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(240, 8)).astype("float32")
        y = (x[:, 0] + x[:, 1] > 0).astype("int64")
        return (x[:180], y[:180]), (x[180:], y[180:])


    def subclassed_model():
        """A subclassed classifier (keras.io's way), built by a builder taking no levels."""
        import keras
        from keras import layers

        class Classifier(keras.Model):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.hidden = layers.Dense(16, activation="relu")
                self.drop = layers.Dropout(0.3)
                self.head = layers.Dense(2, activation="softmax")

            def call(self, x, training=False):
                return self.head(self.drop(self.hidden(x), training=training))

        m = Classifier(name="classifier")
        m.compile("adam", "sparse_categorical_crossentropy")
        m(np.zeros((1, 8), "float32"))
        return m


    def flaky(dropout=0.1, bn="none"):
        """A builder that fails for one of the levels it takes."""
        if bn == "after":
            raise ValueError("no BatchNormalization in this block")
        return model()


    def slow():
        """The model, a little slower to train (a trial to interrupt)."""
        import time
        time.sleep(3)
        return model()


    def broken_data():
        raise OSError("no such bucket")


    def model():
        import keras
        from keras import layers
        m = keras.Sequential([keras.Input((8,)), layers.Dense(16, activation="relu"),
                              layers.Dropout(0.3), layers.Dense(2, activation="softmax")], name="mlp")
        m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
        return m


    def tokens():
        rng = np.random.default_rng(0)
        x = rng.integers(1, 50, size=(160, 12))
        y = (x[:, :3].sum(axis=1) > 75).astype("int64")
        return (x[:120], y[:120]), (x[120:], y[120:])


    def transformer(dropout=0.1):
        """keras.io's text classification with a Transformer (the block and embedding of
        tests/callbacks/user_models.py): the builder takes the rate of its attention and
        feed-forward dropouts."""
        import os, sys
        sys.path.insert(0, os.path.join(TESTS, "callbacks"))
        import keras
        from keras import layers
        from user_models import TokenAndPositionEmbedding, TransformerBlock

        inputs = layers.Input(shape=(12,))
        x = TokenAndPositionEmbedding(12, 50, 16)(inputs)
        x = TransformerBlock(16, 2, 16, rate=dropout, attention_dropout=dropout)(x)
        x = layers.GlobalAveragePooling1D()(x)
        x = layers.Dropout(dropout)(x)
        outputs = layers.Dense(2)(layers.Dense(8, activation="relu")(x))
        model = keras.Model(inputs, outputs)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model


    def crashing(dropout=0.1):
        """A model whose loss fails in fit at dropout 0.3 (a trial that crashes)."""
        m = model()
        if dropout == 0.3:
            def failing_loss(y_true, y_pred):
                raise ValueError("the loss failed")
            m.compile("adam", failing_loss)
        return m


    def custom():
        import keras
        from keras import layers

        class Block(layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.dense, self.drop = layers.Dense(8, activation="relu"), layers.Dropout(0.2)

            def call(self, x, training=None):
                return self.drop(self.dense(x), training=training)

        inputs = keras.Input((8,))
        m = keras.Model(inputs, layers.Dense(2, activation="softmax")(Block(name="block")(inputs)))
        m.compile("adam", "sparse_categorical_crossentropy")
        return m
''')


def write_user_code(folder):
    """usercode.py in `folder`, knowing where the tests' keras.io models are."""
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (folder / "usercode.py").write_text(f"TESTS = {tests!r}\n" + USER_CODE)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    write_user_code(folder)
    (folder / "design.json").write_text(json.dumps({"factors": {"dropout": [0.0], "bn": ["after"]}}))
    return folder


def regaudit(workdir, *args, store="mlflow.db"):
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{workdir}/{store}", TF_CPP_MIN_LOG_LEVEL="2",
               RAY_DEDUP_LOGS="0")
    return subprocess.run([sys.executable, "-m", "regaudit", "study", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=900)


def answered(text):
    """The recommendation is there, as an action: change the model, keep it, or train
    more seeds (its full text, with `--verbose` and in the report, says why)."""
    return any(words in text for words in ("Change your model: ", "Keep your model as given",
                                           "No answer yet: ", "No recommendation: "))


def client(workdir):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")


def study_runs(workdir, study_id, status=None, parent=False):
    """The study's trial runs (`parent=True`: its parent run)."""
    c = client(workdir)
    experiment = c.get_experiment_by_name("regaudit-study")
    query = f"tags.`regaudit.study` = '{study_id}'" + (f" and attributes.status = '{status}'" if status else "")
    return [r for r in c.search_runs([experiment.experiment_id], query)
            if (r.data.tags.get("regaudit.study.role") == "parent") == parent]


@pytest.fixture(scope="module")
def first(workdir):
    done = regaudit(workdir, "usercode:model", "--data", "usercode:data", "--design", "design.json",
                    "--seeds", "2", "--max-seeds", "2", "--epochs", "2", "--max-concurrent", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    study_id = done.stdout.split()[1].rstrip(":")
    return done, study_id


def test_every_trial_is_an_audited_tagged_mlflow_run_of_its_variant(workdir, first):
    done, study_id = first
    runs = study_runs(workdir, study_id)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    trials = {(r.data.tags["regaudit.variant"], r.data.tags["regaudit.seed"]) for r in runs}
    assert trials == {("as given", "0"), ("as given", "1"), ("dropout=0,bn=after", "0"), ("dropout=0,bn=after", "1")}
    assert len({r.data.tags["regaudit.study.trial"] for r in runs}) == 4  # Ray's trial ids
    for run in runs:
        tags, params = run.data.tags, run.data.params
        variant = tags["regaudit.variant"]
        if variant == "as given":
            assert (tags["regaudit.dropout_layers"], tags["regaudit.batchnorm_layers"]) == ("1", "0")
        else:  # the variant's model, audited: no Dropout, BN after the hidden layer's activation
            assert (tags["regaudit.dropout_layers"], tags["regaudit.batchnorm_layers"]) == ("0", "1")
            assert tags["regaudit.batchnorm_placement"] == "after_activation"
            assert (params["study.dropout"], params["study.bn"]) == ("0.0", "after")
        assert params["seed"] == tags["regaudit.seed"] and params["epochs"] == "2"
        assert "val_accuracy" in run.data.metrics or any(
            a.path == "regaudit" for a in client(workdir).list_artifacts(run.info.run_id))
    lines = done.stderr.splitlines()  # not a terminal: one line per finished trial
    assert sum(line.startswith("[") and "/4] " in line for line in lines) == 4
    assert answered(done.stdout) and "RA251" in done.stdout
    report = done.stdout.split("report: ")[1].split(" (also")[0]
    assert os.path.isfile(report) and answered(open(report, encoding="utf-8").read())
    # in MLflow, a sweep's shape: one parent run with the answer, every trial its child
    [parent] = study_runs(workdir, study_id, parent=True)
    assert parent.info.status == "FINISHED" and parent.info.run_name.startswith(f"regaudit study {study_id}")
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert parent.data.params["seeds"] == "2" and parent.data.params["spending"] == "obrien-fleming"
    assert answered(parent.data.tags["regaudit.recommendation"])  # the action, in the runs table
    assert parent.data.tags["regaudit.recommendation"] in done.stdout
    assert parent.data.tags["regaudit.claim.RA251"] in ("supported", "contradicted", "negligible", "not shown")
    assert parent.data.tags["regaudit.study.trainings"] == "4"
    assert [a.path for a in client(workdir).list_artifacts(parent.info.run_id, "regaudit/report")] == [
        f"regaudit/report/{os.path.basename(report)}"]
    assert f"also in MLflow run {parent.info.run_id}" in done.stdout


def test_a_resumed_study_runs_each_trial_exactly_once(workdir, first):
    _, study_id = first
    again = regaudit(workdir, "usercode:model", "--data", "usercode:data", "--design", "design.json",
                     "--seeds", "2", "--max-seeds", "2", "--epochs", "2", "--study-id", study_id)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "(0 trained now)" in again.stdout and len(study_runs(workdir, study_id)) == 4
    # interrupted: one trial's run lost with its node, another left RUNNING when killed
    c = client(workdir)
    runs = study_runs(workdir, study_id)
    lost = next(r for r in runs if r.data.tags["regaudit.variant"] == "as given")
    c.delete_run(lost.info.run_id)
    killed = next(r for r in runs if r.data.tags["regaudit.variant"] != "as given")
    c.delete_run(killed.info.run_id)
    stale = c.create_run(killed.info.experiment_id, tags={k: killed.data.tags[k] for k in
                                                          ("regaudit.study", "regaudit.variant", "regaudit.seed")})
    resumed = regaudit(workdir, "usercode:model", "--data", "usercode:data", "--design", "design.json",
                       "--seeds", "2", "--max-seeds", "2", "--epochs", "2", "--study-id", study_id, "--json")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert c.get_run(stale.info.run_id).info.status == "KILLED"
    finished = study_runs(workdir, study_id, "FINISHED")
    keys = [(r.data.tags["regaudit.variant"], r.data.tags["regaudit.seed"]) for r in finished]
    assert len(keys) == len(set(keys)) == 4
    printed = json.loads(resumed.stdout)
    assert printed["schema"] == "regaudit.findings/1" and printed["findings"][0]["id"] == "RA260"
    [parent] = study_runs(workdir, study_id, parent=True)  # reopened, not made again
    assert parent.info.status == "FINISHED" and {r.data.tags["mlflow.parentRunId"] for r in finished} == {
        parent.info.run_id}
    assert sorted(printed["runs"]) == sorted(r.info.run_id for r in finished)


def test_dry_run_prints_the_trials_and_their_cost_and_trains_nothing(workdir):
    done = regaudit(workdir, "usercode:model", "--data", "usercode:data", "--design", "article",
                    "--seeds", "3", "--dry-run", store="dry.db")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("42 trials (14 variants x 3 seeds, up to 112 if every variant's seeds are "
                                  "added (up to 8 each; only the variants an open question compares get "
                                  "them)), 5 epochs each")
    assert "dropout=0.5,bn=none: Dropout" not in done.stdout  # the model has a Dropout to set
    assert "  dropout=0.5,bn=before\n" in done.stdout and "estimated time: about" in done.stdout
    expected = done.stdout.split("with more seeds where a question stays open: about ")[1]
    none, some = int(expected.split()[0]), int(expected.split("s) when no variant differs, ")[1].split()[0])
    assert 42 <= none <= 112 and 42 <= some <= 112  # the simulated policy's trainings
    assert not (workdir / "dry.db").exists()  # no store opened, no run


@pytest.mark.parametrize("args, said", [
    (("usercode:model", "--data", "usercode:data", "--design", "sideways"), "design 'sideways' is neither a design"),
    (("usercode:model", "--data", "usercode:broken_data"), "data function usercode:broken_data raised OSError: no such bucket"),
    (("usercode:custom", "--data", "usercode:data"), "layer 'block' holds Dropout or BatchNormalization"),
    (("nomodule:model", "--data", "usercode:data"), "model builder 'nomodule:model' cannot be imported"),
    (("usercode:flaky", "--data", "usercode:data", "--design", "design.json"),
     "variant 'dropout=0,bn=after' cannot be built (ValueError: no BatchNormalization in this block); "
     "expected a model regaudit can rewrite, or a builder `module:function` that builds every variant "
     "(def build(dropout=0.5, bn='after'"),
    (("usercode:subclassed_model", "--data", "usercode:data", "--design", "design.json"),
     "builder usercode:subclassed_model takes no arguments, not the levels dropout, bn, and model "
     "'classifier' is a subclassed Classifier, whose call() a config cannot rewrite; give it the levels "
     "as keyword arguments (def build(dropout=0.5, bn='after'"),
    (("usercode:model", "--data", "usercode:data", "--design", "design.json", "--address", "127.0.0.1:1"),
     "is a local file, which trials on other machines"),
])
def test_bad_input_is_one_line_and_exits_2(workdir, args, said):
    done = regaudit(workdir, *args)
    assert done.returncode == 2, (done.stdout, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert said in lines[-1] and "Traceback" not in done.stderr  # one line, the last


def test_a_subclassed_model_object_asks_for_its_builder_whatever_the_design(workdir, monkeypatch):
    import regaudit
    from regaudit import UsageError

    monkeypatch.chdir(workdir)
    monkeypatch.syspath_prepend(str(workdir))
    import usercode

    (workdir / "lr.json").write_text(json.dumps({"factors": {"lr": [3.0]}}))  # no structural level
    with pytest.raises(UsageError) as error:
        regaudit.study(usercode.subclassed_model(), "usercode:data", design="lr.json", seeds=1)
    said = str(error.value)
    assert "give a builder `module:function` (def build(dropout=0.5, bn='after'" in said and "\n" not in said
    assert "subclassed Classifier" in said or "cannot be loaded here" in said


def test_a_transformer_given_as_a_builder_trains_each_dropout_rate(workdir):
    (workdir / "rates.json").write_text(json.dumps({"factors": {"dropout": [0.0, 0.3]}}))
    done = regaudit(workdir, "usercode:transformer", "--data", "usercode:tokens", "--design", "rates.json",
                    "--seeds", "1", "--max-seeds", "1", "--epochs", "1", "--experiment", "transformer")
    assert done.returncode == 0, done.stderr[-3000:]
    study_id = done.stdout.split()[1].rstrip(":")
    c = client(workdir)
    experiment = c.get_experiment_by_name("transformer")
    runs = [r for r in c.search_runs([experiment.experiment_id], f"tags.`regaudit.study` = '{study_id}'")
            if "regaudit.variant" in r.data.tags]  # the trials, not their parent
    by_variant = {}
    for run in runs:
        by_variant.setdefault(run.data.tags["regaudit.variant"], []).append(run)
    assert sorted(by_variant) == ["as given", "dropout=0", "dropout=0.3"] and len(runs) == 3
    for run in by_variant["dropout=0.3"]:  # attention, both block dropouts and the head: 0.3 each
        assert run.data.tags["regaudit.dropout_rates"].split(",") == ["0.3"] * 4
        assert run.data.tags["regaudit.heads"] == "logits"
    for run in by_variant["as given"]:
        assert set(run.data.tags["regaudit.dropout_rates"].split(",")) == {"0.1"}
    assert answered(done.stdout)


def test_seeds_are_added_only_to_the_variants_an_open_question_needs_at_the_looks_level(workdir):
    from regaudit.studies.sequential import look_level

    done = regaudit(workdir, "usercode:model", "--data", "usercode:data", "--design", "design.json",
                    "--seeds", "2", "--max-seeds", "3", "--epochs", "1", "--experiment", "sequential")
    assert done.returncode == 0, done.stderr[-3000:]
    study_id = done.stdout.split()[1].rstrip(":")
    c = client(workdir)
    runs = c.search_runs([c.get_experiment_by_name("sequential").experiment_id],
                         f"tags.`regaudit.study` = '{study_id}' and tags.`regaudit.variant` != ''")
    seeds = {}
    for run in runs:
        seeds.setdefault(run.data.tags["regaudit.variant"], set()).add(int(run.data.tags["regaudit.seed"]))
    assert len(seeds) == 2 and all(s in ({0, 1}, {0, 1, 2}) for s in seeds.values())
    if any(len(s) == 3 for s in seeds.values()):  # a look at 2 seeds asked for a third, at its share
        assert "look 1 at 2 seeds (level " in done.stderr and "more seeds for" in done.stderr
        assert f"2 looks, tested at {look_level(3, 2, 3):.3g}" in done.stdout
    else:  # stopped at the first look, tested at its share
        assert f"tested at {look_level(2, 0, 3):.3g}" in done.stdout


def test_a_crashed_trial_is_retried_its_runs_end_failed_and_the_study_says_so(workdir):
    (workdir / "crash.json").write_text(json.dumps({"factors": {"dropout": [0.3]}}))
    done = regaudit(workdir, "usercode:crashing", "--data", "usercode:data", "--design", "crash.json",
                    "--seeds", "1", "--max-seeds", "1", "--epochs", "1", "--experiment", "crashing")
    assert done.returncode == 1, done.stderr[-3000:]
    last = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("regaudit: 1 of 2 trials failed; first error: ") and "the loss failed" in last
    assert last.endswith("their runs are FAILED in MLflow experiment 'crashing'")
    assert "report: " in done.stdout and "None" not in done.stdout  # the finished trial's report
    c = client(workdir)
    runs = [r for r in c.search_runs([c.get_experiment_by_name("crashing").experiment_id])
            if "regaudit.variant" in r.data.tags]
    statuses = sorted((r.data.tags["regaudit.variant"], r.info.status) for r in runs)
    assert statuses == [("as given", "FINISHED"), ("dropout=0.3", "FAILED"), ("dropout=0.3", "FAILED")]


def test_an_interrupted_study_says_what_finished_and_the_command_that_resumes_it(workdir):
    args = ["usercode:slow", "--data", "usercode:data", "--design", "design.json", "--seeds", "2",
            "--max-seeds", "2", "--epochs", "1", "--max-concurrent", "1"]
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{workdir}/mlflow.db", TF_CPP_MIN_LOG_LEVEL="2")
    # a new session, signalled as a terminal's Ctrl-C signals its foreground process group
    process = subprocess.Popen([sys.executable, "-m", "regaudit", "study", *args], cwd=workdir, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("[2/4]"):
            break
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=300)
    err = "".join(seen) + err
    assert process.returncode == 130, err[-3000:]
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert " interrupted: " in last and " of 4 trials finished; no conclusion is drawn" in last
    finished = int(last.split(" interrupted: ")[1].split(" of ")[0])
    assert 2 <= finished < 4
    resume = last.split("Resume it (finished trials are not trained again): ")[1]
    study_id = resume.split("--study-id ")[1]
    assert resume == "regaudit study " + " ".join(args) + f" --study-id {study_id}"
    assert "Tuner.restore" not in err + out and "the article's claims" not in out and "report:" not in out
    assert len(study_runs(workdir, study_id, "FINISHED")) == finished
    again = regaudit(workdir, *resume.split()[2:])  # the printed command, as given
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"({4 - finished} trained now" in again.stdout
    runs = study_runs(workdir, study_id, "FINISHED")
    keys = [(r.data.tags["regaudit.variant"], r.data.tags["regaudit.seed"]) for r in runs]
    assert len(keys) == len(set(keys)) == 4


def test_an_unreachable_cluster_is_one_line_and_exits_2(workdir):
    env = dict(os.environ, MLFLOW_TRACKING_URI="http://127.0.0.1:9", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-m", "regaudit", "study", "usercode:model", "--data", "usercode:data",
                           "--design", "design.json", "--address", f"127.0.0.1:{_free_port()}"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    last = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert "Ray cluster at 127.0.0.1:" in last and "cannot be reached" in last and "Traceback" not in done.stderr


# -- the demo: a study of the article's CNN on digits ------------------------------------
# `regaudit demo` is run as a user runs it, from a non-editable install at the clone's root,
# by .ci/user_path (2 seeds, 2 epochs): its terminal, its report's first minute of reading,
# its size, and its parent run with 14 FINISHED children are checked there, once per CI run.


# -- a real two-node cluster -------------------------------------------------------

def ray_command():
    return os.path.join(os.path.dirname(sys.executable), "ray")


#: the test cluster runs without Ray's token authentication, head, worker and driver alike
#: (a real cluster's token reaches the driver as Ray's docs say: ~/.ray/auth_token)
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_DEDUP_LOGS": "0"}


def _ray_start(*args):
    """`ray start ...` in a new session: its daemons stay in that process group, which the
    teardown ends (never `ray stop`, which would end every Ray on the machine)."""
    process = subprocess.Popen([ray_command(), "start", *args, "--disable-usage-stats"],
                               env=dict(os.environ, **CLUSTER_ENV), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    _, err = process.communicate(timeout=180)
    return process.pid, process.returncode, err


def _end_group(pgid):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture
def cluster(tmp_path):
    port = _free_port()
    groups = []
    try:
        pgid, code, err = _ray_start("--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false")
        groups.append(pgid)
        assert code == 0, err[-2000:]
        pgid, code, err = _ray_start(f"--address=127.0.0.1:{port}", "--num-cpus=1")
        groups.append(pgid)
        assert code == 0, err[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        for pgid in reversed(groups):
            _end_group(pgid)


@pytest.fixture
def server(tmp_path):
    running = Server(tmp_path)
    running.start()
    yield running.uri
    running.stop()


def test_a_study_on_two_ray_nodes_writes_every_trial_to_one_mlflow_server(tmp_path, cluster, server):
    import mlflow

    write_user_code(tmp_path)
    (tmp_path / "design.json").write_text(json.dumps({"factors": {"dropout": [0.0]}}))
    env = dict(os.environ, MLFLOW_TRACKING_URI=server, TF_CPP_MIN_LOG_LEVEL="2", **CLUSTER_ENV)
    done = subprocess.run(
        [sys.executable, "-m", "regaudit", "study", "usercode:model", "--data", "usercode:data",
         "--design", "design.json", "--seeds", "2", "--max-seeds", "2", "--epochs", "1",
         "--address", cluster, "--max-concurrent", "2", "--cpus-per-trial", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    study_id = done.stdout.split()[1].rstrip(":")
    client = mlflow.MlflowClient(server)
    experiment = client.get_experiment_by_name("regaudit-study")
    runs = [r for r in client.search_runs([experiment.experiment_id], f"tags.`regaudit.study` = '{study_id}'")
            if "regaudit.variant" in r.data.tags]
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}, (done.stdout, done.stderr[-3000:])
    nodes = {r.data.tags["regaudit.study.node"] for r in runs}
    assert len(nodes) == 2, nodes  # one CPU per node, two trials at a time: both nodes train
