"""A study's design: which variants of the user's model it trains, named by their levels.

A variant is a dict of factor levels (`regaudit.studies.rewrite.FACTORS` and `lr`, the
learning-rate factor); the empty dict is the model as given, which every design holds
(the recommendation is measured against it). A design is a list of blocks, each a full
factorial of its factors' levels; variants that two blocks share are trained once.

- `article` (the default): the levels that give each claim of the seed article a test:
  Dropout off/on (0 / 0.5) x BN none/after/before, a dropout-rate grid (0.1, 0.3, 0.8 with
  BN after the activation; 0.2-0.7 is the article's good range), and the learning rate
  x3 and x10 with and without BN.
- `dropout-x-bn`: Dropout off/on (0 / 0.5) x BN none/after/before (the demo's design).
- `dropout-rates`: the rate grid 0, 0.1, 0.3, 0.5, 0.7, the rest as given.
- `bn-placement`: BN none / after / before the activation, the rest as given.
- `remedies`: Dropout moved after the last BN (Li et al.), BN momentum 0.9 (a lagging BN
  catches up sooner); BN re-estimated after training is measured in every BN run (RA213).
- a file (YAML or JSON): `{"factors": {"dropout": [0, 0.3], "bn": ["none", "after"]}}` or
  `{"blocks": [{"dropout": [...]}, {"lr": [...]}]}`.
"""

import itertools
import json
import os

from regaudit.errors import UsageError, error_line
from regaudit.studies.rewrite import BN_LEVELS, FACTORS

GIVEN = "as given"
ORDER = FACTORS + ("lr",)
DESIGNS = {
    "article": [
        {"dropout": [0.0, 0.5], "bn": ["none", "after", "before"]},
        {"dropout": [0.1, 0.3, 0.8], "bn": ["after"]},
        {"dropout": [0.5], "bn": ["none", "after"], "lr": [3.0, 10.0]},
    ],
    "dropout-x-bn": [{"dropout": [0.0, 0.5], "bn": ["none", "after", "before"]}],
    "dropout-rates": [{"dropout": [0.0, 0.1, 0.3, 0.5, 0.7]}],
    "bn-placement": [{"bn": list(BN_LEVELS)}],
    "remedies": [{"dropout_after_bn": [True]}, {"bn_momentum": [0.9]}],
}


def _level(factor, value, where):
    if factor == "bn":
        if value not in BN_LEVELS:
            raise UsageError(f"{where}: bn level {value!r}; expected one of {', '.join(BN_LEVELS)}")
        return value
    if factor in ("dropout_after_bn", "spatial"):
        if not isinstance(value, bool):
            raise UsageError(f"{where}: {factor} level {value!r}; expected true or false")
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: {factor} level {value!r}; expected a number") from None
    if factor == "dropout" and not 0 <= number < 1:
        raise UsageError(f"{where}: dropout rate {number:g}; expected a rate in [0, 1)")
    if factor == "lr" and not number > 0:
        raise UsageError(f"{where}: learning-rate factor {number:g}; expected a positive factor")
    if factor == "bn_momentum" and not 0 <= number < 1:
        raise UsageError(f"{where}: bn_momentum {number:g}; expected a momentum in [0, 1)")
    return number


def _block(block, where):
    if not isinstance(block, dict) or not block:
        raise UsageError(f"{where}: a block {block!r}; expected a mapping of factor to levels")
    unknown = sorted(set(block) - set(ORDER))
    if unknown:
        raise UsageError(f"{where}: unknown factor {', '.join(map(repr, unknown))}; expected "
                         f"one of {', '.join(ORDER)}")
    out = {}
    for factor, levels in block.items():
        levels = levels if isinstance(levels, list) else [levels]
        if not levels:
            raise UsageError(f"{where}: factor {factor!r} has no levels; give one or more")
        out[factor] = [_level(factor, value, where) for value in levels]
    return out


def load(design):
    """The blocks of a design name or file."""
    if design in DESIGNS:
        return DESIGNS[design]
    if not os.path.isfile(str(design)):
        raise UsageError(f"design {design!r} is neither a design ({', '.join(DESIGNS)}) nor a file; "
                         "give one of those or a YAML/JSON file of factors and levels")
    with open(design, encoding="utf-8") as handle:
        text = handle.read()
    try:
        if str(design).endswith(".json"):
            data = json.loads(text)
        else:
            import yaml
            data = yaml.safe_load(text)
    except Exception as error:  # noqa: BLE001 - any parse error is the file's
        raise UsageError(f"design file {design}: cannot be read ({type(error).__name__}: "
                         f"{error_line(error)}); expected YAML or JSON") from None
    if not isinstance(data, dict) or not ({"factors", "blocks"} & set(data)):
        raise UsageError(f"design file {design}: expected a mapping with 'factors' (factor -> levels) "
                         "or 'blocks' (a list of such mappings)")
    blocks = data.get("blocks") or [data["factors"]]
    if not isinstance(blocks, list):
        raise UsageError(f"design file {design}: 'blocks' is {type(blocks).__name__}; expected a list")
    return [_block(b, f"design file {design}") for b in blocks]


def name(levels):
    """'dropout=0.3,bn=before' (factors in a fixed order), or 'as given'."""
    if not levels:
        return GIVEN
    parts = []
    for factor in ORDER:
        if factor in levels:
            value = levels[factor]
            parts.append(f"{factor}={value:g}" if isinstance(value, float) else
                         f"{factor}={str(value).lower()}")
    return ",".join(parts)


def parse(variant):
    """The levels of a variant's name (`name`'s inverse): {} for the model as given."""
    if variant == GIVEN:
        return {}
    levels = {}
    for part in str(variant).split(","):
        factor, _, value = part.partition("=")
        if value in ("true", "false"):
            levels[factor] = value == "true"
        else:
            try:
                levels[factor] = float(value)
            except ValueError:
                levels[factor] = value
    return levels


#: what each factor's level asks the user to do to their model
_ACTIONS = {
    "dropout": lambda v: "remove Dropout" if v == 0 else f"set Dropout's rate to {v:g}",
    "bn": lambda v: {"none": "remove BatchNormalization",
                     "after": "put BatchNormalization after the activation",
                     "before": "put BatchNormalization before the activation"}.get(v, f"bn={v}"),
    "dropout_after_bn": lambda v: "move Dropout after the last BatchNormalization" if v
    else "keep Dropout where it is",
    "spatial": lambda v: "use SpatialDropout" if v else "use plain Dropout",
    "bn_momentum": lambda v: f"set BatchNormalization's momentum to {v:g}",
    "lr": lambda v: f"multiply the learning rate by {v:g}",
}


def action(variant, given=None):
    """What a variant asks of the user's model, in words: 'remove Dropout and put
    BatchNormalization after the activation' ('keep the model as given' for it). `given`:
    the model's own levels, where known ({"dropout": 0.5, "bn": "after"}); a level the
    model already has is not asked for."""
    levels = parse(variant)
    changed = {f: v for f, v in levels.items() if (given or {}).get(f) != v}
    levels = changed or levels
    if not levels:
        return "keep the model as given"
    words = [_ACTIONS[f](v) if f in _ACTIONS else f"{f}={v}" for f, v in levels.items()]
    return " and ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " and " + words[-1]


def variants(design):
    """[(name, levels)]: the model as given first, then every block's combinations, once."""
    out = {GIVEN: {}}
    for block in load(design):
        factors = [f for f in ORDER if f in block]
        for combination in itertools.product(*(block[f] for f in factors)):
            levels = dict(zip(factors, combination))
            if levels.get("lr") == 1.0:
                levels.pop("lr")
            out.setdefault(name(levels), levels)
    return list(out.items())


def trials(design, seeds, first_seed=0):
    """[(variant name, levels, seed)]: every variant with each seed, seed-major (the
    first seed of every variant before any second seed, so an early stop stays balanced)."""
    return trials_for(design, seeds, first_seed)


def trials_for(design, seeds, first_seed=0):
    """[(variant name, levels, seed)] with `seeds` {variant: seeds} (an int: every variant
    alike), seed-major: the first seed of every variant before any second seed."""
    table = variants(design)
    counts = {v: seeds for v, _ in table} if isinstance(seeds, int) else seeds
    most = max(counts.values(), default=0)
    return [(variant, levels, seed) for seed in range(first_seed, first_seed + most)
            for variant, levels in table if seed < first_seed + counts.get(variant, 0)]
