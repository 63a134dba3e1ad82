"""The answer as MLflow tags, so the runs table shows it without opening an artifact.

Every run a report is logged into (one run, a comparison run, a study's parent run) gets:
`regaudit.recommendation`, a study's recommendation as an action (RA260); one
`regaudit.claim.RA25x` per claim with its verdict; one `regaudit.interaction.<placement>`
per Dropout x BN interaction (RA261) with its verdict; and one `regaudit.finding.<id>` per
rule with a notice, its title and most consequential finding in one line. The MLflow UI
shows tags as columns of the runs table.
"""

from regaudit.answer.claims import CLAIM_PREFIX
from regaudit.answer.finding import one_line
from regaudit.answer.grouped import answer_id, grouped
from regaudit.answer.levels import NOTICE
from regaudit.schema import TAG_PREFIX

RECOMMENDATION_TAG = TAG_PREFIX + "recommendation"
CLAIM_TAG = TAG_PREFIX + "claim."
INTERACTION_TAG = TAG_PREFIX + "interaction."
FINDING_TAG = TAG_PREFIX + "finding."
#: a tag's value is cut here: the runs table shows a line, the report holds the rest
#: (MLflow 3.x allows 8,000 characters)
TAG_LIMIT = 500


def answer_tags(findings):
    """{tag: value}: the recommendation, each claim's and interaction's verdict, and a
    line per rule with a notice."""
    from regaudit.studies.effects import RULE as INTERACTION

    interaction, tags = INTERACTION[0], {}
    for finding in findings:
        numbers = finding.numbers
        if finding.id == answer_id():
            tags[RECOMMENDATION_TAG] = one_line(numbers.get("action") or finding.text, TAG_LIMIT)
        elif finding.id.startswith(CLAIM_PREFIX) and "verdict" in numbers:
            tags[CLAIM_TAG + finding.id] = numbers["verdict"]
        elif finding.id == interaction and "placement" in numbers:
            tags[INTERACTION_TAG + numbers["placement"]] = numbers.get("verdict", "")
    for block in grouped(findings):
        if block.level == NOTICE and block.id != interaction:
            tags[FINDING_TAG + block.id] = block.line(TAG_LIMIT)
    return tags
