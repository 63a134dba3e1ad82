"""The notebook view: the answer and a table, a few KB, with a link to the full report.

What `load_run(s)(...)` and a study's result show in Jupyter (`_repr_html_`): the
recommendation as an action, the claims' verdicts, one row per finding rule (its title,
what its most consequential finding concerns and says, how many more), then where the
full report is. No figure, no script; every run-derived string escaped by jinja2.
"""

from regaudit.answer.grouped import answer_of, claims_of, grouped

TEMPLATE = """<div class="regaudit-summary" style="font-family: sans-serif; max-width: 60em">
<p><b>{{ title }}</b></p>
{% if answer %}<p style="border-left: 4px solid #d9822b; padding-left: .6em"><b>{{ answer }}</b></p>{% endif %}
{% if claims %}<table><tr><th style="text-align:left">claim</th><th style="text-align:left">verdict</th><th style="text-align:left">effect</th></tr>
{% for c in claims %}<tr><td>{{ c.numbers.claim }}</td><td><b>{{ c.numbers.verdict }}</b></td><td>{{ c.brief }}</td></tr>
{% endfor %}</table>{% endif %}
{% if groups %}<table><tr><th></th><th style="text-align:left">finding</th><th style="text-align:left">where</th><th style="text-align:left">measured</th></tr>
{% for g in groups %}{% set about, brief, others = g.headline() %}<tr><td><code>{{ g.id }}</code>{% if g.level == "notice" %} !{% endif %}</td><td>{{ g.title }}</td><td>{{ about }}{% if others %} (+{{ others }} more){% endif %}</td><td>{{ brief }}</td></tr>
{% endfor %}</table>{% else %}<p>No finding: the runs hold too little data for any rule.</p>{% endif %}
<p>{% if href %}The full report, with the figures and every finding in full: <a href="{{ href }}" target="_blank">{{ where }}</a>{% else %}{{ where }}{% endif %}</p>
</div>"""


def summary_html(found, title, where, href=None):
    """The notebook summary of `found` (findings, in report order): `title` first, `where`
    the full report is last (a link when `href` is given)."""
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    answer = answer_of(found)
    return environment.from_string(TEMPLATE).render(
        title=title, answer=(answer.numbers.get("action") or answer.text) if answer else "",
        claims=claims_of(found),
        groups=grouped(found), where=where, href=href)
