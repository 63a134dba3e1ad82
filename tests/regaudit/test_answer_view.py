"""The answer as a reader meets it: numbers at their precision, findings grouped by rule,
a variant's levels as an action, and the words before a report's first figure."""

import pytest

from regaudit.answer.finding import Finding
from regaudit.answer.grouped import grouped, groups_json
from regaudit.answer.precision import interval, same_at, shown
from regaudit.reports.html import words_before_figure
from regaudit.studies.design import action, name, parse, variants


@pytest.mark.parametrize("value, error, said", [
    (0.98431, 0.012, "0.984"),      # two significant digits of the error: 0.012 -> 3 decimals
    (0.98431, 0.12, "0.98"),
    (0.98431, 1.0, "1.0"),
    (123.456, 7.0, "123.5"),
    (0.98431, None, "0.984"),       # no error known: 3 significant digits
    (1.987e-08, None, "1.99e-08"),
    (float("nan"), 0.1, "n/a"),
])
def test_a_value_shows_the_digits_its_error_supports(value, error, said):
    assert shown(value, error) == said


def test_an_interval_prints_its_ends_at_the_estimates_precision_and_ties_read_alike():
    assert interval(0.0123, 0.004, 0.021, signed=True) == "+0.0123 [+0.0040, +0.0210]"
    assert interval(0.5, float("nan"), 0.6) == "0.5"
    assert same_at(0.98431, 0.98434, 0.01) and not same_at(0.98, 0.97, 0.001)


def _finding(rule, about, brief, level="info", weight=0.0):
    return Finding(rule, "r", f"{about}: {brief} (the full text).", {}, level, about, brief, weight)


def test_findings_group_one_block_per_rule_notices_first_by_weight_same_words_on_one_row():
    found = [_finding("RA202", "'a' vs 'b'", "no detectable difference", weight=-0.9),
             _finding("RA202", "'a' vs 'c'", "no detectable difference", weight=-0.5),
             _finding("RA202", "'b' vs 'c'", "val_accuracy +0.1 higher", "notice", 1.1),
             _finding("RA220", "layer x", "12% dead", "notice", 0.12),
             _finding("RA220", "layer y", "40% dead", "notice", 0.40),
             _finding("RA260", "", "the answer", "notice"), _finding("RA251", "claim", "not shown")]
    blocks = grouped(found)
    assert [b.id for b in blocks] == ["RA202", "RA220"]  # both hold a notice; first-seen order
    assert blocks[1].rows() == [("layer y", "40% dead"), ("layer x", "12% dead")]
    assert blocks[0].rows() == [("'b' vs 'c'", "val_accuracy +0.1 higher"),
                                ("'a' vs 'c' and 1 more", "no detectable difference")]
    assert blocks[0].headline() == ("'b' vs 'c'", "val_accuracy +0.1 higher", 2)
    assert groups_json(found) == [
        {"id": "RA202", "title": blocks[0].title, "level": "notice", "findings": [2, 1, 0]},
        {"id": "RA220", "title": "Dead ReLU units", "level": "notice", "findings": [4, 3]}]


def test_a_variant_name_reads_back_as_its_levels_and_as_an_action():
    for variant, levels in variants("article") + variants("remedies"):
        assert parse(variant) == {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                                      else v) for k, v in levels.items()}
        assert name(parse(variant)) == variant
    assert action("dropout=0,bn=after") == "remove Dropout and put BatchNormalization after the activation"
    # a level the model already has is not asked for
    assert action("dropout=0.5,bn=before", {"dropout": 0.5, "bn": "after"}) == (
        "put BatchNormalization before the activation")
    assert action("as given") == "keep the model as given"


def test_the_words_before_the_first_figure_leave_folded_text_out_and_count_its_summary():
    page = ("<html><head><title>t i t l e</title><style>p {}</style></head><body><h1>One two</h1>"
            "<details><summary>three</summary><p>hidden words here</p>"
            "<details><summary>nested</summary>also hidden</details></details>"
            "<p>four five</p><figure><img src='x'><figcaption>after</figcaption></figure>"
            "<p>after too</p></body></html>")
    assert words_before_figure(page) == ["One", "two", "three", "four", "five"]
