"""One trial of a study: one variant of the user's model trained with one seed, audited by
`RegAudit`, as its own MLflow run in the study's experiment (what each Ray Tune trial runs).

The run is tagged `regaudit.study` (the study id), `regaudit.variant`, `regaudit.seed` and
`regaudit.study.trial` (Ray's trial id), `regaudit.study.node` (the Ray node it ran on),
with each factor's level, the seed, the epochs and
the batch size as params. A trial whose FINISHED run already exists returns it without
training (a resumed study, or Ray retrying a trial that finished): no run twice.
"""

import importlib
import inspect
import os
import sys
import warnings

from regaudit.errors import RegauditError, UsageError, error_line
from regaudit.studies.config_graph import BUILDER_SIGNATURE, NeedsBuilder
from regaudit.studies.runs import (
    LEVEL_PARAM, NODE_TAG, NOTES_TAG, PARENT_RUN_TAG, SEED_TAG, STUDY_TAG, TRIAL_TAG, VARIANT_TAG, finished_run,
)


def resolve(spec, what):
    """The object a `module:function` names (the module importable from the study's
    working directory); a function given as itself is returned as is."""
    if callable(spec):
        return spec
    module, _, attribute = str(spec).partition(":")
    if not module or not attribute:
        raise UsageError(f"{what} {spec!r}; expected module:function (a function in an importable module)")
    try:
        found = importlib.import_module(module)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"{what} {spec!r} cannot be imported ({type(error).__name__}: {error}); "
                         "expected module:function importable from the current directory") from None
    if not callable(found):
        raise UsageError(f"{what} {spec!r} is a {type(found).__name__}; expected a function")
    return found


def load_data(spec):
    """((x_train, y_train), (x_val, y_val)) from the data function, checked."""
    try:
        data = resolve(spec, "data")()
    except RegauditError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's function, said in one line
        raise UsageError(f"data function {spec} raised {type(error).__name__}: {error}; expected it "
                         "to return ((x_train, y_train), (x_val, y_val))") from None
    if isinstance(data, (tuple, list)) and len(data) == 2 and \
            all(isinstance(part, (tuple, list)) and len(part) == 2 for part in data):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(_is_dataset(p) for p in data):
        return data
    raise UsageError(f"data function {spec} returned {type(data).__name__}"
                     f"{' of ' + str(len(data)) if isinstance(data, (tuple, list)) else ''}; expected "
                     "((x_train, y_train), (x_val, y_val)) arrays or (train, validation) tf.data datasets")


def _is_dataset(value):
    return type(value).__name__.endswith("Dataset") or hasattr(value, "element_spec")


def _builder_takes(function, levels):
    parameters = inspect.signature(function).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return True
    return bool(levels) and all(k in parameters for k in levels)


def build(model_spec, levels):
    """(a compiled model of this variant, [notes]): from a saved `.keras` file through the
    config rewrite, or from a builder called with the levels as keyword arguments."""
    import keras

    from regaudit.callbacks.study.variants import build_variant, compile_like

    structural = {k: v for k, v in levels.items() if k != "lr"}
    if isinstance(model_spec, str) and model_spec.endswith((".keras", ".h5")):
        if not os.path.isfile(model_spec):
            raise UsageError(f"model file {model_spec} does not exist; expected a saved .keras file")
        try:
            with warnings.catch_warnings():  # a variant trains a fresh optimizer anyway
                warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
                model = keras.saving.load_model(model_spec)
        except Exception as error:  # noqa: BLE001 - Keras' own, said as what to give instead
            raise NeedsBuilder(
                f"model file {model_spec} cannot be loaded here ({type(error).__name__}: "
                f"{error_line(error, 120)}); register its custom classes "
                f"(@keras.saving.register_keras_serializable) or give a builder `module:function` "
                f"({BUILDER_SIGNATURE})") from None
        return build_variant(model, levels)
    builder = resolve(model_spec, "model builder")
    # the builder makes a fresh model: the model as given (and a learning-rate variant of
    # it) is its own output, never a copy rebuilt from a config
    if not structural or _builder_takes(builder, structural):
        model = builder(**structural)
        lr = float(levels.get("lr", 1.0))
        return (model if lr == 1.0 and getattr(model, "compiled", False)
                else compile_like(model, model, lr)), []
    try:
        return build_variant(builder(), levels)
    except NeedsBuilder as error:
        takes = ", ".join(inspect.signature(builder).parameters) or "no arguments"
        raise NeedsBuilder(f"builder {model_spec} takes {takes}, not the levels "
                           f"{', '.join(structural)}, and {str(error).split('; give')[0]}; give it the "
                           f"levels as keyword arguments ({BUILDER_SIGNATURE})") from None


def train_trial(spec, trial, trial_id="", node=""):
    """Train one (variant, seed); return {"run_id", "val_accuracy"/"val_loss", "skipped"}."""
    for entry in spec.get("sys_path", []):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    import keras
    import mlflow

    from regaudit.callbacks import RegAudit
    from regaudit.errors import RegauditWarning

    mlflow.set_tracking_uri(spec["tracking_uri"])
    experiment = mlflow.set_experiment(spec["experiment"])
    variant, levels, seed = trial["variant"], trial["levels"], int(trial["seed"])
    done = finished_run(spec["study_id"], variant, seed, experiment.experiment_id)
    if done is not None:
        return {"run_id": done, "skipped": True}
    tags = {STUDY_TAG: spec["study_id"], VARIANT_TAG: variant, SEED_TAG: str(seed), TRIAL_TAG: trial_id,
            NODE_TAG: node}
    if spec.get("parent_run"):
        tags[PARENT_RUN_TAG] = spec["parent_run"]  # a nested child of the study's parent run
    # everything that can fail happens inside the run: a crashed trial's run ends FAILED
    with mlflow.start_run(run_name=f"{variant} seed {seed}", tags=tags) as run, warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*has no noise source.*", RegauditWarning)
        mlflow.log_params({**{LEVEL_PARAM + k: v for k, v in levels.items()}, "seed": seed,
                           "epochs": spec["epochs"], "batch_size": spec.get("batch_size")})
        train, validation = load_data(spec["data"])
        keras.utils.set_random_seed(seed)
        model, notes = build(spec["model"], levels)
        # common random numbers: building consumed the random state as the variant's layers
        # asked, so it is seeded again here; every variant of seed s then trains on the same
        # data order (Keras' shuffle draws from this state on every backend)
        keras.utils.set_random_seed(seed)
        if notes:
            mlflow.set_tag(NOTES_TAG, "; ".join(notes)[:4000])
        fit = dict(epochs=int(spec["epochs"]), verbose=0,
                   callbacks=[RegAudit(seed=seed, report=False)])
        if isinstance(train, (tuple, list)):
            history = model.fit(*train, validation_data=tuple(validation),
                                batch_size=int(spec.get("batch_size") or 32), **fit)
        else:
            history = model.fit(train, validation_data=validation, **fit)
    keras.backend.clear_session()
    out = {"run_id": run.info.run_id, "skipped": False}
    for key in ("val_accuracy", "val_loss"):
        if history.history.get(key):
            out[key] = float(history.history[key][-1])
    return out


def check_variants(model_spec, variants):
    """{variant: [notes]}: every variant built once, before any trial starts (a model that
    needs a builder, or a builder that fails, is said here in one line, not in a trial)."""
    import keras

    out = {}
    for variant, levels in variants:
        try:
            _, out[variant] = build(model_spec, levels)
        except RegauditError:
            raise
        except Exception as error:  # noqa: BLE001 - the user's builder or model, in one line
            first = error_line(error)
            raise UsageError(f"variant '{variant}' cannot be built ({type(error).__name__}: {first}); "
                             f"expected a model regaudit can rewrite, or a builder `module:function` "
                             f"that builds every variant ({BUILDER_SIGNATURE})") from None
        finally:
            keras.backend.clear_session()
    return out
