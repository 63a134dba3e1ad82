"""The one vocabulary of levels for everything regaudit tells the user, most severe
first. Lint rules speak before training, from the architecture alone: `error` (the model
is wrong as written), `warning` (likely to hurt), `info`. Findings speak after training,
from measurements: `notice` (worth acting on: a measured, significant effect) or `info`
(context). `regaudit lint --fail-on` takes a lint level."""

ERROR = "error"
WARNING = "warning"
NOTICE = "notice"
INFO = "info"
#: every level, most severe first
LEVELS = (ERROR, WARNING, NOTICE, INFO)
#: what a lint rule can say, most severe first
LINT_LEVELS = (ERROR, WARNING, INFO)
#: what a finding can say, most important first
FINDING_LEVELS = (NOTICE, INFO)
