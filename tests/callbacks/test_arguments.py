"""The callbacks' arguments: each constraint refuses what it should in one line, every
argument is documented, and a good value passes."""

import inspect
import re

import numpy as np
import pytest

from regaudit import RegAudit, UsageError
from regaudit.callbacks.arguments import ARGUMENTS_DOC, CONSTRAINTS
from regaudit.callbacks.audit import Audit

BAD = {
    "probe_size": [0, -3, 2.5, True, "512"],
    "probe_batch_size": [0, 1.0, False],
    "mc_samples": [0, None],
    "ensemble_probe_size": [-1, "128"],
    "max_metric_layers": [-1, 3.0, True],
    "write_timeout": [0, -1.5, True, "10", None],
}
GOOD = {"probe_size": 1, "probe_batch_size": 7, "mc_samples": 16, "ensemble_probe_size": 3,
        "max_metric_layers": 0, "write_timeout": np.float32(0.25)}


@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_each_constraint_says_what_it_received_and_expected(name):
    expected = CONSTRAINTS[name][1]
    for value in BAD[name]:
        with pytest.raises(UsageError) as error:
            RegAudit(**{name: value})
        assert str(error.value) == f"regaudit: {name} expects {expected}; received {name}={value!r}."
        assert isinstance(error.value, ValueError)
    RegAudit(**{name: GOOD[name]})


def test_every_argument_is_documented_once_and_every_constraint_is_an_argument():
    parameters = set(inspect.signature(Audit.__init__).parameters) - {"self"}
    documented = re.findall(r"^        (\w+): ", ARGUMENTS_DOC, re.M)
    assert sorted(documented) == sorted(parameters)
    assert set(CONSTRAINTS) <= parameters
