"""Findings grouped by rule: what a reader meets first.

A rule that fires once per variant, layer or run gives one block here, not one
paragraph each: its title, the findings as rows (what each concerns and its consequence
in a few words), most consequential first, each finding's full text kept for the folded
part of the report. The recommendation (RA260) and the article's claims (RA25x) have
their own places (the answer, the claims table) and are not grouped here.

The JSON of `regaudit show --json` carries this form as `groups`, each naming its
findings by their index in the flat `findings` list (schema `regaudit.findings/1`).
"""

from dataclasses import dataclass

from regaudit.answer.claims import CLAIM_PREFIX
from regaudit.answer.finding import names_text, one_line, rule_titles
from regaudit.answer.levels import NOTICE


@dataclass
class FindingGroup:
    """One rule id's findings: `title`, `level` (notice when any is), `findings` sorted
    by consequence (notices first, then by weight)."""

    id: str
    title: str
    level: str
    findings: list

    def _said(self):
        """{brief: [what each finding saying it concerns]}, most consequential first."""
        said = {}
        for f in self.findings:
            said.setdefault(f.short, []).append(f.about)
        return said

    def rows(self):
        """[(what it concerns, its consequence in a few words)], most consequential first;
        findings that say the same in a few words share one row ("'a' vs 'b' and 20
        more": no detectable difference)."""
        return [(names_text([a for a in abouts if a], shown=1), brief)
                for brief, abouts in self._said().items()]

    def headline(self):
        """(what, consequence, how many findings the first row leaves out): the block in
        one line, for the terminal, the tags and the notebook."""
        brief, abouts = next(iter(self._said().items()))
        return names_text([a for a in abouts if a], shown=1), brief, len(self.findings) - len(abouts)

    def line(self, width):
        """'title: what: consequence (+n more)' in at most `width` characters, cut at a
        word: the terminal's line and the MLflow tag of the block."""
        about, brief, others = self.headline()
        more = f" (+{others} more)" if others else ""
        return one_line(f"{self.title}: {about + ': ' if about else ''}{brief}", width - len(more)) + more

    def as_dict(self, index):
        return {"id": self.id, "title": self.title, "level": self.level,
                "findings": [index[id(f)] for f in self.findings]}


def answer_id():
    """The recommendation's id (RA260), from its home (`regaudit.studies.recommend`)."""
    from regaudit.studies.recommend import RULE

    return RULE[0]


def answer_of(found):
    """The recommendation among `found` (RA260), or None."""
    return next((f for f in found if f.id == answer_id()), None)


def claims_of(found):
    """The article's claims among `found` (RA251-RA257), in their own order."""
    return sorted((f for f in found if f.id.startswith(CLAIM_PREFIX)), key=lambda f: f.id)


def is_grouped(finding):
    """Whether a finding belongs to a group block (not the answer, not a claim)."""
    return finding.id != answer_id() and not finding.id.startswith(CLAIM_PREFIX)


def grouped(found):
    """[FindingGroup] of `found` (already in report order): one per rule id, the groups
    holding a notice first, then in the order their first finding came."""
    titles = rule_titles()
    blocks = {}
    for finding in found:
        if is_grouped(finding):
            blocks.setdefault(finding.id, []).append(finding)
    out = []
    for rule, members in blocks.items():
        members = sorted(members, key=lambda f: (f.level != NOTICE, -f.weight))
        level = NOTICE if any(f.level == NOTICE for f in members) else members[0].level
        out.append(FindingGroup(rule, titles.get(rule, members[0].rule), level, members))
    return sorted(out, key=lambda g: g.level != NOTICE)


def groups_json(found):
    """The grouped form for the findings' JSON: [{id, title, level, findings: [indices]}]."""
    index = {id(f): i for i, f in enumerate(found)}
    return [g.as_dict(index) for g in grouped(found)]
