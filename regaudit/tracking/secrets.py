"""Credentials never leave the process: URIs and messages are redacted before they reach
a tag, an artifact, a spool file, a warning or a report."""

import re

#: user:password@ in any URI (http, https, postgresql, mysql, ...)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]+@")
#: query parameters that carry secrets (?token=..., &password=...)
_SECRET_QUERY = re.compile(r"(?i)([?&](?:token|password|passwd|secret|key|access_token|auth)=)[^&\s]+")


def redact(text):
    """`text` with the user information of every URI and secret query values replaced
    by `***`."""
    text = _USERINFO.sub(lambda m: m.group("scheme") + "***@", str(text))
    return _SECRET_QUERY.sub(lambda m: m.group(1) + "***", text)
