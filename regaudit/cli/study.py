"""`regaudit study`: train controlled variants of the user's model with seeds on Ray Tune,
then conclude (the recommendation, the article's claims as a table, the notices one line
each, where the report is). Usage errors exit 2, run-time failures 1, in one line."""

import json
import os
import shlex
import sys
import time

import click

from regaudit.errors import RegauditError
from regaudit.answer.levels import NOTICE
from regaudit.studies.design import DESIGNS


def _ids():
    """(the recommendation's id, the claims' id prefix), from their homes (imported late:
    the command line starts without scipy)."""
    from regaudit.answer.claims import CLAIM_PREFIX
    from regaudit.studies.recommend import RULE

    return RULE[0], CLAIM_PREFIX


def _claims_table(found):
    _, claim_prefix = _ids()
    # in the claims' own order (RA251 ... RA257), whatever their levels sort them into
    rows = sorted((f.id, f.numbers.get("verdict", ""), f.numbers.get("claim", "")) for f in found
                  if f.id.startswith(claim_prefix) and "verdict" in f.numbers)
    return [f"  {i}  {verdict:<12} {claim}" for i, verdict, claim in rows]


#: a terminal line's width at most (a finding's line is cut at a word before it)
LINE = 120


def finding_lines(found, verbose=False):
    """Findings as the terminal shows them, one screen: the recommendation (RA260) as an
    action, the article's claims as a table, then one line per rule (`regaudit.answer.
    grouped`: notices "!" first, its most consequential finding, "+n more" for the
    others); `verbose`: every finding in full."""
    from regaudit.answer.grouped import grouped

    recommendation, claim_prefix = _ids()
    answer = [f for f in found if f.id == recommendation]
    rest = [f for f in found if f.id != recommendation]
    if verbose:
        return ([f.text for f in answer]
                + [f" {'!' if f.level == 'notice' else '-'} [{f.id}] {f.text}" for f in rest])
    lines = [f.numbers.get("action") or f.text for f in answer]
    table = _claims_table(rest)
    if table:
        lines += ["the article's claims:"] + table
    blocks = grouped(rest)
    for block in blocks:
        marker = "!" if block.level == NOTICE else "-"
        lines.append(f" {marker} [{block.id}] {block.line(LINE - 12)}")
    if blocks:
        lines.append("(--verbose: every finding in full; the report has them too)")
    return lines


def summary(result, verbose=False):
    """The study's lines for the terminal (none when no trial finished)."""
    if not result.run_ids:
        return []
    looks = (f"; {len(result.looks)} looks, tested at {result.level:.3g}" if len(result.looks) > 1
             or result.level < 0.05 else "")
    lines = [f"study {result.study_id}: {len(result.run_ids)} runs in experiment "
             f"'{result.experiment}' ({result.trained} trained now{looks})"]
    lines += finding_lines(result.findings, verbose)
    if verbose:
        lines += [f"failed: {trial.get('variant')}, seed {trial.get('seed')}: {error}"
                  for trial, error in result.failed]
    return lines


def conclude(result, verbose=False, more=()):
    """Print a finished study's lines, where its report is and the `more` lines; then,
    when trials failed and no retry finished them, raise their one line (exit 1)."""
    for line in summary(result, verbose):
        click.echo(line)
    if result.report:
        click.echo(f"report: {result.report} (also in MLflow run {result.report_run}, artifacts "
                   "regaudit/report/)")
    for line in more:
        click.echo(line)
    raise_if_failed(result)


def raise_if_failed(result):
    """The failed trials' one line as the command's error (exit 1), when any failed."""
    if result.failed:
        raise RegauditError(f"regaudit: {result.failure_line()}")


def command_line(context):
    """The command that `context` runs, as the user would type it again: its arguments,
    the options given on the command line (the group's too), without --study-id."""
    words = []
    for level in (context.parent, context):
        if level is None:
            continue
        words += [] if level is context.parent else [level.info_name]
        for parameter in level.command.params:
            value = level.params.get(parameter.name)
            source = level.get_parameter_source(parameter.name)
            if parameter.name in ("study_id",) or value is None or (
                    isinstance(parameter, click.Option) and source is not click.core.ParameterSource.COMMANDLINE):
                continue
            if isinstance(parameter, click.Argument):
                words.append(str(value))
            elif parameter.is_flag:
                words += [parameter.opts[0]] if value else []
            else:
                words += [parameter.opts[0], str(value)]
    return words


def resumable(run):
    """Run `run()` (a study) inside a command; Ctrl-C during it becomes one line saying
    what finished and the exact command (this one, with --study-id) that resumes it,
    exit 130."""
    from regaudit.errors import Interrupted

    try:
        return run()
    except Interrupted as stopped:
        said = stopped.said
        resume = shlex.join(["regaudit", *command_line(click.get_current_context()),
                             "--study-id", said["study_id"]])
        raise Interrupted(f"regaudit: study {said['study_id']} interrupted: {said['finished']} of "
                          f"{said['planned']} trials finished; no conclusion is drawn from a partial "
                          f"design. Resume it (finished trials are not trained again): {resume}") from None


def dry_run_lines(cost, timed, max_concurrent):
    """The dry run's estimate in words: the total, what it is made of, and why trials
    side by side are not `max_concurrent` times faster."""
    made_of = ", ".join(f"{what} {value:.0f} s" for what, value in cost.parts.items())
    one = ", ".join(f"{what} {value:.1f} s" for what, value in timed.items() if what != "cores used")
    return (f"estimated time: about {cost.seconds:.0f} s ({made_of}), the first look's trials "
            f"{max_concurrent} at a time: one trial keeps {cost.cores_used:.1f} of this machine's "
            f"{os.cpu_count()} cores busy, so they progress {cost.parallel:.1f}x as fast as one after "
            f"another (one trial of the model as given, timed here: {one})")


@click.command()
@click.argument("model")
@click.option("--data", required=True, metavar="MODULE:FUNCTION",
              help="Returns ((x_train, y_train), (x_val, y_val)) arrays or (train, val) datasets.")
@click.option("--design", default="article", show_default=True,
              help=f"{', '.join(DESIGNS)}, or a YAML/JSON file of factors and levels.")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(1, 100),
              help="Seeds per variant.")
@click.option("--max-seeds", default=8, show_default=True, type=click.IntRange(1, 100),
              help="Seeds per variant at most: added only to the variants an open, reachable question "
                   "compares, each look at its share of the 5% level. Equal to --seeds: one look.")
@click.option("--margin", default=0.01, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="An accuracy difference within +-margin (shown by an equivalence test) is negligible.")
@click.option("--spending", default="obrien-fleming", show_default=True,
              type=click.Choice(["obrien-fleming", "pocock"]),
              help="How the 5% level is shared over the looks (Lan-DeMets spending function).")
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(1, 100000))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, 10**7))
@click.option("--experiment", default="regaudit-study", show_default=True)
@click.option("--study-id", default=None, help="Resume this study: only trials without a FINISHED run run.")
@click.option("--address", default=None, help="Join this Ray cluster (default: Ray on this machine).")
@click.option("--max-concurrent", default=2, show_default=True, type=click.IntRange(1, 10000))
@click.option("--cpus-per-trial", default=1.0, show_default=True, type=click.FloatRange(0, None))
@click.option("--gpus-per-trial", default=0.0, show_default=True, type=click.FloatRange(0, None))
@click.option("--dry-run", is_flag=True, help="Print the trials and their estimated cost; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON (regaudit.findings/1).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="The report's path (default: regaudit-study-ID.html).")
@click.option("-v", "--verbose", is_flag=True, help="Every finding in full.")
def study(model, data, design, seeds, max_seeds, margin, spending, epochs, batch_size, experiment, study_id,
          address, max_concurrent, cpus_per_trial, gpus_per_trial, dry_run, as_json, output, verbose):
    """Answer "what do Dropout and BatchNormalization do to MY model?" by experiment:
    train its variants (MODEL: a saved .keras file or module:function) with seeds, each an
    audited MLflow run, on Ray Tune; then the recommendation and the article's claims."""
    from regaudit import studies
    from regaudit.cli.lint import import_keras_quietly

    sys.path.insert(0, os.getcwd())
    trials = studies.plan(model, data, design, seeds)
    import_keras_quietly()
    if dry_run:
        from regaudit.studies.estimate import estimate, time_one_trial

        model_part = studies._spec_part(model, "model")
        began = time.perf_counter()
        notes = studies.check(model_part, data, design)
        checked = time.perf_counter() - began
        timed = time_one_trial(model_part, data, batch_size)
        cost = estimate(dict(timed, checks=checked), len(trials), epochs, max_concurrent)
        more = (f", up to {len(notes) * max(seeds, max_seeds)} if every variant's seeds are added (up to "
                f"{max_seeds} each; only the variants an open question compares get them)"
                if max_seeds > seeds else "")
        click.echo(f"{len(trials)} trials ({len(notes)} variants x {seeds} seeds{more}), {epochs} epochs each")
        for variant, said in notes.items():
            click.echo(f"  {variant}{': ' + '; '.join(said) if said else ''}")
        click.echo(dry_run_lines(cost, timed, max_concurrent))
        if max_seeds > seeds:
            from regaudit.studies.simulate import expected_trainings

            none, some = expected_trainings(design, seeds, max_seeds, spending, margin=margin)
            per = (cost.parts["trials"] - timed["process start"]) / len(trials)
            click.echo(f"with more seeds where a question stays open: about {none:.0f} trainings "
                       f"(about {cost.seconds + per * (none - len(trials)):.0f} s) when no variant differs, "
                       f"{some:.0f} (about {cost.seconds + per * (some - len(trials)):.0f} s) when one differs "
                       f"by what {max_seeds} seeds detect; simulated, 100 studies of this design")
        return
    result = resumable(lambda: studies.study(
        model, data, design, seeds, epochs, batch_size, experiment, study_id, address,
        max_concurrent, cpus_per_trial, gpus_per_trial, output, progress=not as_json,
        max_seeds=max_seeds, echo=lambda line: click.echo(line, err=True), margin=margin,
        spending=spending))
    if as_json:
        from regaudit.answer.grouped import groups_json

        click.echo(json.dumps({"schema": "regaudit.findings/1", "study": result.study_id,
                               "runs": result.run_ids, "group_by": "regaudit.variant",
                               "findings": [f.as_dict() for f in result.findings],
                               "groups": groups_json(result.findings)},
                              indent=2, allow_nan=False))
        raise_if_failed(result)
    else:
        conclude(result, verbose)
