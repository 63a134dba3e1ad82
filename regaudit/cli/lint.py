"""`regaudit lint`: the architecture lint from the command line (a saved .keras model
or a module:function that builds one). Exit 0 clean, 1 findings at or above --fail-on,
2 usage errors, each said in one line on stderr."""

import os
import sys

import click

from regaudit.answer.levels import LINT_LEVELS


def import_keras_quietly():
    """Import Keras with TensorFlow's start-up log lines (written to the process's stderr
    by C++ before any setting applies) sent to /dev/null, so an error stays one line."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return keras


def _load_model(target):
    """A Keras model from a `.keras` file or a `module:function` that builds one."""
    import zipfile

    from regaudit.errors import UsageError, error_line

    if target.endswith((".keras", ".h5")) or os.path.sep in target or os.path.exists(target):
        if not os.path.isfile(target):
            raise UsageError(f"regaudit lint: no such file: {target}; pass a saved model "
                             "(MODEL.keras) or module:function that builds one.")
        if target.endswith(".keras") and not zipfile.is_zipfile(target):
            raise UsageError(f"regaudit lint: {target} is not a .keras file (not a zip archive); "
                             "save the model with model.save('model.keras').")
        keras = import_keras_quietly()

        try:
            return keras.saving.load_model(target, compile=False)
        except Exception as error:  # noqa: BLE001 - one line: what the file is not
            reason = error_line(error) or type(error).__name__
            raise UsageError(f"regaudit lint: {target} is not a Keras model regaudit can load "
                             f"({type(error).__name__}: {reason}); save it with model.save('"
                             "model.keras'), or pass module:function that builds it.") from None
    module_name, _, function_name = target.partition(":")
    if not module_name or not function_name:
        raise UsageError(f"regaudit lint: received {target!r}; expected MODEL.keras or "
                         "module:function (a function that returns a keras.Model).")
    import importlib

    import_keras_quietly()
    sys.path.insert(0, os.getcwd())
    try:
        builder = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"regaudit lint: cannot import {target} ({type(error).__name__}: "
                         f"{error}); check the module path and the function name.") from None
    finally:
        sys.path.remove(os.getcwd())
    try:
        model = builder()
    except Exception as error:  # noqa: BLE001 - the user's builder failed: say so in one line
        reason = error_line(error)
        raise UsageError(f"regaudit lint: {target}() raised {type(error).__name__}: {reason}; "
                         "fix the builder so that it returns a keras.Model.") from None
    keras = import_keras_quietly()

    if not isinstance(model, keras.Model):
        raise UsageError(f"regaudit lint: {target}() returned {type(model).__name__}, expected a "
                         "keras.Model.")
    return model


@click.command()
@click.argument("target", metavar="MODEL.keras|module:function")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON (schema in the README).")
@click.option("--ignore", multiple=True, metavar="RA1xx",
              help="Switch a rule off (repeat, or separate ids with commas).")
@click.option("--fail-on", type=click.Choice([*LINT_LEVELS, "never"]),
              default="warning", show_default=True,
              help="Exit 1 when a finding is at least this severe.")
@click.option("--steps", type=click.IntRange(1), help="Planned training steps (BN momentum rule).")
@click.option("--batch-size", type=click.IntRange(1), help="Training batch size (small-batch BN rule).")
def lint(target, as_json, ignore, fail_on, steps, batch_size):
    """What the architecture says about Dropout and BatchNormalization before training:
    rule findings with their layer path. Exit 0 when clean, 1 when a finding is at or
    above --fail-on, 2 for a usage error."""
    import json

    from regaudit.errors import UsageError
    from regaudit.model.lint_rules import RULE_IDS, SEVERITIES, counts

    ignored = {part.strip().upper() for item in ignore for part in item.split(",") if part.strip()}
    if ignored - RULE_IDS:
        raise UsageError(f"regaudit lint: unknown rule id(s) {', '.join(sorted(ignored - RULE_IDS))} "
                         f"for --ignore; the rules are {', '.join(sorted(RULE_IDS))}.")
    model = _load_model(target)
    from regaudit.callbacks.lint import lint as lint_model

    found = lint_model(model, steps=steps, batch_size=batch_size, ignore=ignored)
    tally = counts(found)
    if as_json:
        click.echo(json.dumps({"schema": "regaudit.lint/1", "model": model.name, "target": target,
                               "counts": tally, "findings": [f.as_dict() for f in found]}, indent=2))
    else:
        summary = ", ".join(f"{tally[s]} {s}" for s in SEVERITIES)
        click.echo(f"{model.name}: {len(found)} finding{'s' if len(found) != 1 else ''} ({summary})")
        for severity in SEVERITIES:
            part = [f for f in found if f.severity == severity]
            if part:
                click.echo(severity)
            for finding in part:
                click.echo(f"  {finding.id} {finding.layer}: {finding.message}")
                click.echo(f"        source: {finding.source}")
    if fail_on != "never":
        worst = SEVERITIES.index(fail_on)
        if any(SEVERITIES.index(f.severity) <= worst for f in found):
            raise SystemExit(1)
