"""The callbacks' arguments: each constraint refuses what it should in one line, every
argument is documented, and a good value passes."""

import inspect
import re

import keras
import numpy as np
import pytest

from regaudit import ActivationStats, DropoutEnsemble, RegAudit, UsageError
from regaudit.callbacks.audit.arguments import ARGUMENTS_DOC, CONSTRAINTS
from regaudit.callbacks.audit.hooks import Audit

BAD = {
    "probe_size": [0, -3, 2.5, True, "512"],
    "probe_batch_size": [0, 1.0, False],
    "mc_samples": [0, None],
    "ensemble_probe_size": [-1, "128"],
    "max_metric_layers": [-1, 3.0, True],
    "write_timeout": [0, -1.5, True, "10", None],
    "seed": [-1, 1.5, "0", True, 2**32],
    "strict": ["yes", 1, None],
    "report": ["no", 0],
}
GOOD = {"probe_size": 1, "probe_batch_size": 7, "mc_samples": 16, "ensemble_probe_size": 3,
        "max_metric_layers": 0, "write_timeout": np.float32(0.25), "seed": np.int64(7),
        "strict": True, "report": None}


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
    parameters = {name for name, parameter in inspect.signature(Audit.__init__).parameters.items()
                  if parameter.kind is not parameter.VAR_KEYWORD} - {"self"}
    documented = re.findall(r"^        (\w+): ", ARGUMENTS_DOC, re.M)
    assert sorted(documented) == sorted(parameters)
    assert set(CONSTRAINTS) <= parameters


@pytest.mark.parametrize("called", [RegAudit, ActivationStats, DropoutEnsemble])
def test_an_unknown_keyword_names_the_class_called_its_closest_argument_and_every_one(called):
    with pytest.raises(UsageError) as error:
        called(every=0)
    text = str(error.value)
    assert text.startswith(f"regaudit: {called.__name__}() got an unexpected keyword argument 'every' "
                           "(did you mean schedule=Every(epochs=N)?); it accepts probe, probe_size, schedule")
    assert "\n" not in text and "Audit.__init__" not in text
    with pytest.raises(UsageError, match=r"'probe_batchsize' \(did you mean probe_batch_size=\?\)"):
        called(probe_batchsize=64)
    with pytest.raises(UsageError, match=r"'zzz'; it accepts probe, "):
        called(zzz=1)


x4 = np.zeros((4, 2), "float32")
BAD_PROBES = [
    ("x", "received x='x' (str)"),
    ((x4, np.zeros(3)), "different numbers of samples (x [4], y [3])"),
    ((x4, np.zeros(4), np.ones(5)), "(x [4], y [4], sample_weight [5])"),
    ((x4, np.zeros(4), np.ones(4), 0), "a tuple of 4 items"),
    (np.float32(3), "received x=np.float32(3.0) (float32)"),
    ((x4, "labels"), "received y='labels' (str)"),
    (({"a": x4, "b": np.zeros((5, 1))}, np.zeros(4)), "(x [4, 5], y [4])"),
    ((np.zeros((0, 2)), np.zeros(0)), "holds no samples"),
]


@pytest.mark.parametrize("probe, said", BAD_PROBES, ids=range(len(BAD_PROBES)))
def test_a_probe_the_audit_cannot_use_is_refused_at_construction_in_one_line(probe, said):
    with pytest.raises(UsageError) as error:
        RegAudit(probe=probe)
    assert said in str(error.value) and "\n" not in str(error.value)


def test_a_generator_probe_is_refused_and_usable_probes_pass():
    with pytest.raises(UsageError, match="generator, which can be read only once"):
        RegAudit(probe=(batch for batch in [x4]))
    for probe in (x4, (x4, np.zeros(4)), (x4, np.zeros(4), np.ones(4)), [x4, x4],
                  ({"a": x4, "b": x4}, {"out": np.zeros(4)}), np.array(["a text", "b"]),
                  (keras.ops.convert_to_tensor(x4), keras.ops.zeros((4,)))):
        assert RegAudit(probe=probe).probe is probe


def test_gradient_ics_says_it_also_takes_a_flag():
    with pytest.raises(UsageError, match=r"gradient_ics expects True, False, 'epoch', Every"):
        RegAudit(gradient_ics=2)
