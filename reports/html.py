"""The report as one self-contained HTML page: images inlined as data URIs, CSS inline,
no scripts, no external requests, every run-derived string escaped by jinja2."""

import base64
import time

from regaudit import __version__

from regaudit.reports.cells import format_cell as _format

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="regaudit {{ version }}">
<title>{{ title }}</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.notice { border-left: 4px solid #d9822b; background: #fff7ee; }
.info { border-left: 4px solid #9aa5b1; background: #f7f8fa; }
.finding { padding: .4em .8em; margin: .4em 0; } .answer { font-size: 1.1em; }
table.rows { margin: .2em 0; font-size: .85em; } table.rows td { border: 0; padding: 0 .8em 0 0; }
details { margin: .3em 0; } summary { cursor: pointer; color: #444; font-size: .9em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; } .meta { color: #666; font-size: .85em; }
code { background: #f4f4f4; padding: 0 .2em; } .wide { overflow-x: auto; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">regaudit {{ version }} &middot; {{ runs.runs|length }} run(s) &middot; grouped by
<code>{{ group_by }}</code> &middot; created {{ created }}</p>

{% if answer %}<h2 id="answer">The answer</h2>
<p class="finding {{ answer.level }} answer"><b>{{ answer.numbers.get("action") or answer.text }}</b></p>
<details><summary>Evidence (<code>{{ answer.id }}</code>)</summary><p>{{ answer.text }}</p></details>{% endif %}

{% if claims %}<h2 id="claims">The article's claims, on these runs</h2>
{% set decided = claims|rejectattr("numbers.verdict", "equalto", "not shown")|list %}
{% if not decided %}<details><summary>None of the {{ claims|length }} claims can be judged on these runs: each is not shown (what would show it, in full)</summary>{% endif %}
<table>
<tr><th>id</th><th>claim</th><th>verdict</th><th>effect, simultaneous interval</th></tr>
{% for c in claims %}<tr><td><code>{{ c.id }}</code></td><td>{{ c.numbers.claim }}</td><td><b>{{ c.numbers.verdict }}</b></td><td>{{ c.brief }}</td></tr>
{% endfor %}</table>
<details><summary>Each claim's evidence</summary>
<p>The article regaudit grew from, {{ article }}, makes these claims. Each gets a verdict
on these runs: supported or contradicted only when a corrected test says so, negligible when
an equivalence test puts the effect within the margin, otherwise not shown, with what would
show it.</p>
{% for c in claims %}<p><code>{{ c.id }}</code> {{ c.text }}</p>
{% endfor %}</details>{% if not decided %}</details>{% endif %}{% endif %}

<h2 id="findings">Findings</h2>
{% for g in groups %}<div class="finding {{ g.level }}"><code>{{ g.id }}</code> <b>{{ g.title }}</b>
{% set rows = g.rows() %}{% set shown_rows = shown_rows if g.level == "notice" else 1 %}<table class="rows">{% for about, brief in rows[:shown_rows] %}<tr><td>{{ about }}</td><td>{{ brief }}</td></tr>
{% endfor %}</table>
<details><summary>{% if rows|length > shown_rows %}{{ rows|length - shown_rows }} more, {% endif %}in full</summary>
{% for f in g.findings %}<p>{% if f.about %}<i>{{ f.about }}</i>: {% endif %}{{ f.text }}</p>
{% endfor %}</details></div>
{% else %}<p>No finding: the runs hold too little data for any rule.</p>{% endfor %}
<details><summary>How the tests work</summary>
<p>A difference is claimed only with a corrected test. The recommendation (RA260),
the article's claims (RA251-RA256) and the Dropout x BN interaction (RA261) are contrasts of one
linear model per outcome (robust errors), Holm-corrected together over all of them, with
intervals simultaneous over them; a contrast within the margin is negligible. Holm's
step-down test is more powerful than the simultaneous intervals, so a verdict can rest on its
p while the contrast's simultaneous interval still reaches past 0. Pairs of groups
(RA202, RA203) use Welch's t-test, Holm-corrected over the pairs of the same measure; their
intervals are 95%. The id is the rule's (<code>regaudit show --json</code>).</p></details>
{% if comparisons|length %}<details id="comparisons"><summary>Differences between groups: {{ comparisons|length }} pair(s) tested</summary>
<p class="meta">Each pair once, the group with the higher mean first; "significant" only when
Holm's p (over the comparisons of that measure) is below 0.05. Otherwise: the smallest
difference these seeds would detect with 80% power, and the seeds per group the observed
difference would need. Pairs whose means print alike are ties and are not listed.</p>
<table>
<tr>{% for c in comparisons.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in comparisons.itertuples(index=False) %}<tr>{% for v in row %}<td{% if v is number %} class="num"{% endif %}>{{ fmt(v) }}</td>{% endfor %}</tr>
{% endfor %}</table></details>{% endif %}

{% for section, figures in sections %}
<h2>{{ section.title }}</h2>
<p>{{ section.intro }}</p>
{% for stem, caption, png in figures %}<figure id="{{ stem }}">
<img src="data:image/png;base64,{{ b64(png) }}" alt="{{ stem }}">
<figcaption>{{ caption }}</figcaption>
</figure>
{% endfor %}{% endfor %}

{% if lint|length %}<h2 id="lint">Architecture lint, and what was measured there</h2>
<p>What <code>regaudit lint</code> read off the architecture before training (rules RA1xx),
next to the audit's measurement at the same layer where one speaks to the rule.</p>
<table>
<tr><th>id</th><th>severity</th><th>layer</th><th>finding</th><th>measured</th><th>runs</th></tr>
{% for row in lint.itertuples(index=False) %}<tr><td><code>{{ row.id }}</code></td><td>{{ row.severity }}</td><td>{{ row.layer }}</td><td>{{ row.finding }}</td><td>{{ row.measured }}</td><td>{{ row.runs }}</td></tr>
{% endfor %}</table>{% endif %}

<h2 id="overview">Overview</h2>
<div class="wide"><table>
<tr>{% for c in overview.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in overview.itertuples(index=False) %}<tr>{% for v in row %}<td{% if v is number %} class="num"{% endif %}>{{ fmt(v) }}</td>{% endfor %}</tr>
{% endfor %}</table></div>

<h2 id="layers">Layers</h2>
{% for model, used_by, table in layers %}<h3>{{ model }}{% if layers|length > 1 %}: {{ used_by[0] }}{% if used_by|length > 1 %} and {{ used_by|length - 1 }} more run(s){% endif %}{% endif %}</h3>
<p class="meta">runs: {{ used_by|join(", ") }}; {{ fmt(table.params.fillna(0).sum()|int) }} parameters{% if heads.get(model) %}; outputs read as: {{ heads[model] }} (from the compiled loss and the output activation){% endif %}</p>
<table>
<tr>{% for c in table.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in table.itertuples(index=False) %}<tr>{% for v in row %}<td>{{ fmt(v) }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}
<p class="meta">Run ids: {% for run in runs.run_ids %}<code>{{ run }}</code> {% endfor %}</p>
</body>
</html>
"""


def render_html(context):
    """The report as one self-contained HTML page (jinja2, autoescaped)."""
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(TEMPLATE)
    return template.render(
        version=__version__, created=time.strftime("%Y-%m-%d %H:%M"),
        fmt=_format, b64=lambda data: base64.b64encode(data).decode("ascii"), **context,
    )


class _Reader:
    """What a reader sees of a page before its first figure: the text outside folded
    `<details>` (their `<summary>` lines are seen), styles and scripts left out."""

    def __init__(self):
        from html.parser import HTMLParser

        reader = self

        class Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                reader.start(tag)

            def handle_endtag(self, tag):
                reader.end(tag)

            def handle_data(self, data):
                reader.data(data)

        self.parser, self.words, self.folded, self.hidden, self.done = Parser(), [], 0, 0, False
        self.summary = 0

    def start(self, tag):
        if tag in ("figure", "img"):
            self.done = True
        self.folded += tag == "details"
        self.summary += tag == "summary"
        self.hidden += tag in ("style", "script", "title", "head")

    def end(self, tag):
        self.folded -= tag == "details" and self.folded > 0
        self.summary -= tag == "summary" and self.summary > 0
        self.hidden -= tag in ("style", "script", "title", "head") and self.hidden > 0

    def data(self, text):
        if not self.done and not self.hidden and (not self.folded or (self.summary and self.folded == 1)):
            self.words += text.split()


def words_before_figure(page):
    """The words a reader meets before the page's first figure (folded `<details>` text
    not counted, their summaries counted): the measure of "the answer read in a minute"."""
    reader = _Reader()
    reader.parser.feed(page)
    return reader.words
