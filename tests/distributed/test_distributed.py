"""RegAudit under tf.distribute: MirroredStrategy over two logical CPU devices and a
two-process MultiWorkerMirroredStrategy cluster on 127.0.0.1. Each mode runs in its own
process (logical devices and TF_CONFIG must be set before TensorFlow starts); the audit
numbers must equal a single-device run's, and a cluster writes exactly one run."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

import regaudit

pytestmark = pytest.mark.distributed

HERE = Path(__file__).parent
VARYING = ["audit_seconds", "epoch_seconds"]  # wall-clock times, not audit numbers


def run_fit(*args, timeout=300):
    """Start `dist_fit.py args`; return the process (output to a pipe)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(HERE))
    return subprocess.Popen([sys.executable, str(HERE / "dist_fit.py"), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_id_of(process, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    line = [line for line in output.splitlines() if line.startswith("RUN ")][-1]
    run_id = line.split()[2]
    return None if run_id == "none" else run_id


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def audit_values(run_id, table):
    frame = getattr(regaudit.load_run(run_id), table)
    frame = frame[~frame.measure.isin(VARYING)]
    return frame.set_index(["epoch", "probe", "layer", "measure"])["value"].sort_index()


@pytest.fixture(scope="module")
def single_run():
    return run_id_of(run_fit("single", "dist-single"))


def assert_same_audit(reference, run_id):
    for table in ("activations", "shift", "history"):
        expected, got = audit_values(reference, table), audit_values(run_id, table)
        assert list(got.index) == list(expected.index), table
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=table)
    epochs = sorted(regaudit.load_run(run_id).activations.epoch.unique())
    assert epochs == [0, 1, 2, 3]


def test_mirrored_strategy_gives_the_single_device_numbers(single_run):
    run_id = run_id_of(run_fit("mirrored", "dist-mirrored"))
    assert run_id is not None
    assert_same_audit(single_run, run_id)


def test_multi_worker_cluster_writes_one_run_from_the_chief(single_run):
    ports = ",".join(map(str, free_ports(2)))
    workers = [run_fit("worker", str(index), ports, "dist-multiworker") for index in (0, 1)]
    chief, other = (run_id_of(worker) for worker in workers)
    assert chief is not None and other is None  # worker 0 is the chief; worker 1 writes nothing
    experiment = mlflow.get_experiment_by_name("dist-multiworker")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert [run.info.run_id for run in runs] == [chief]
    assert_same_audit(single_run, chief)
