"""The local spool: what could not reach the tracking server, kept on disk until it can.

One append-only journal per run, `<root>/<run id>.jsonl`, each line `<crc32> <json>\\n`:
an entry (an MLflow write: metrics, tags, or an artifact whose file is copied to
`<root>/<run id>/<entry id>/`), or a `done` mark once that entry reached MLflow. A line
cut short by a crash (no newline, or a checksum that does not match) is skipped, so a
half-written entry is never replayed; an entry is replayed until its `done` mark is
written, and the writes it replays are idempotent in MLflow (a metric with the same key,
step, timestamp and value is stored once; an artifact path is overwritten with the same
bytes; a tag is set to the same value), so a crash between a write and its mark cannot
duplicate data.

The root is `REGAUDIT_SPOOL_DIR`, else `$XDG_CACHE_HOME/regaudit/spool`, else
`~/.cache/regaudit/spool`.
"""

import json
import os
import re
import shutil
import uuid
import zlib

#: What a run id in a spool file name may hold (MLflow's hex ids, regaudit's pending ids):
#: nothing that could name a path outside the spool.
RUN_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")


#: The spool's size bound in MB (`REGAUDIT_SPOOL_MAX_MB`, default 2048): past it a write is
#: refused (SpoolFull) rather than filling the disk; the writer warns at 80%.
DEFAULT_MAX_MB = 2048


class SpoolFull(OSError):
    """The spool reached its size bound."""


def max_bytes():
    try:
        return float(os.environ.get("REGAUDIT_SPOOL_MAX_MB", DEFAULT_MAX_MB)) * 1024 * 1024
    except ValueError:
        return DEFAULT_MAX_MB * 1024 * 1024


def spool_size(root=None):
    """Bytes the whole spool holds (journals and files)."""
    total = 0
    for folder, _, files in os.walk(root or spool_root()):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(folder, name))
            except OSError:
                pass
    return total


def spool_root():
    if os.environ.get("REGAUDIT_SPOOL_DIR"):
        return os.environ["REGAUDIT_SPOOL_DIR"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "regaudit", "spool")


#: A journal line longer than this is not regaudit's (its lines hold one batch of at most
#: 1,000 metrics, well under 1 MB): it is skipped as damaged, without reading it whole.
MAX_LINE = 4 * 1024 * 1024


def _lines(handle):
    """The journal's lines, a line longer than MAX_LINE yielded as "" (damaged) after its
    rest is skipped in chunks."""
    while True:
        line = handle.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith("\n"):
            while line and not line.endswith("\n"):
                line = handle.readline(MAX_LINE)
            yield ""
            continue
        yield line


def _safe_artifact_path(path):
    """An artifact path as regaudit writes them: relative, `regaudit/...`, no `..`."""
    parts = str(path).replace("\\", "/").split("/")
    return (isinstance(path, str) and not path.startswith("/") and parts[0] == "regaudit"
            and ".." not in parts and "" not in parts)


def _line(record):
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return f"{zlib.crc32(text.encode()):08x} {text}\n"


def _parse(line):
    """The record of one complete, intact line, else None."""
    if not line.endswith("\n"):
        return None
    checksum, _, text = line[:-1].partition(" ")
    try:
        if int(checksum, 16) != zlib.crc32(text.encode()):
            return None
        return json.loads(text)
    except ValueError:
        return None


class Spool:
    """The journal of one run (see the module docstring)."""

    #: {spool root: bytes it holds}, counted once per process, then kept up to date by `add`
    _sizes = {}

    def usage(self):
        """The share of the size bound in use (0 when nothing was counted yet)."""
        return Spool._sizes.get(self.root, 0) / max_bytes()

    def __init__(self, run_id, root=None):
        if not RUN_ID.fullmatch(str(run_id)):
            from regaudit.errors import UsageError

            raise UsageError(f"regaudit: {str(run_id)[:80]!r} is not a run id (letters, digits, "
                             "'-' and '_' only); list the spooled runs with `regaudit sync`.")
        self.run_id = run_id
        self.root = root or spool_root()
        self.path = os.path.join(self.root, f"{run_id}.jsonl")
        self.files = os.path.join(self.root, run_id)

    def _append(self, record):
        os.makedirs(self.root, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(_line(record))
            handle.flush()
            os.fsync(handle.fileno())

    def add(self, kind, payload, file=None):
        """Keep one write: `kind` (metrics, tags, artifact), its JSON payload and, for an
        artifact, the local file to copy. Returns the entry id."""
        incoming = len(json.dumps(payload, default=str)) + (os.path.getsize(file) if file else 0)
        if self.root not in Spool._sizes:
            Spool._sizes[self.root] = spool_size(self.root)
        if Spool._sizes[self.root] + incoming > max_bytes():
            raise SpoolFull(f"the spool {self.root} reached its bound of {max_bytes() / 2**20:g} MB "
                            "(REGAUDIT_SPOOL_MAX_MB)")
        Spool._sizes[self.root] += incoming
        entry_id = uuid.uuid4().hex
        record = {"id": entry_id, "kind": kind, "payload": payload}
        if file is not None:
            folder = os.path.join(self.files, entry_id)
            os.makedirs(folder, exist_ok=True)
            target = os.path.join(folder, os.path.basename(file))
            shutil.copyfile(file, target)
            with open(target, "rb") as handle:
                os.fsync(handle.fileno())
            record["file"] = target
        self._append(record)
        return entry_id

    def entries(self):
        """(pending entries in order, skipped broken lines)."""
        if not os.path.exists(self.path):
            return [], 0
        entries, done, broken = [], set(), 0
        with open(self.path, encoding="utf-8", errors="replace", newline="") as handle:
            for line in _lines(handle):
                record = _parse(line)
                if record is not None and "id" in record and not self._well_formed(record):
                    record = None  # edited by hand: a path outside the spool or the run
                if record is None:
                    broken += 1
                elif "done" in record:
                    done.add(record["done"])
                elif "created" in record:
                    continue
                else:
                    entries.append(record)
        pending = [e for e in entries if e["id"] not in done
                   and ("file" not in e or os.path.exists(e["file"]))]
        return pending, broken

    def pending(self):
        return self.entries()[0]

    def _well_formed(self, record):
        """An entry regaudit could have written: a known kind; an artifact's file inside
        this run's spool folder and its artifact path under `regaudit/`."""
        kind = record.get("kind")
        if kind not in ("metrics", "tags", "artifact", "create_run", "end_run"):
            return False
        if kind != "artifact":
            return "file" not in record
        file = record.get("file")
        payload = record.get("payload") or {}
        if not isinstance(file, str) or not isinstance(payload, dict):
            return False
        inside = os.path.realpath(file).startswith(os.path.realpath(self.files) + os.sep)
        return inside and _safe_artifact_path(payload.get("artifact_path", ""))

    def created_run(self):
        """The MLflow run id a pending run's journal says it became, or None."""
        if not os.path.exists(self.path):
            return None
        created = None
        with open(self.path, encoding="utf-8", errors="replace", newline="") as handle:
            for line in _lines(handle):
                record = _parse(line)
                if record is not None and "created" in record:
                    created = record["created"]
        return created

    def mark_created(self, run_id):
        if os.path.exists(self.path):  # a create that landed late, after the journal was done
            self._append({"created": run_id})

    def mark_done(self, entry):
        self._append({"done": entry["id"]})
        if "file" in entry:
            shutil.rmtree(os.path.dirname(entry["file"]), ignore_errors=True)

    def clear_if_done(self):
        """Remove the journal once nothing is pending."""
        if os.path.exists(self.path) and not self.pending():
            os.remove(self.path)
            shutil.rmtree(self.files, ignore_errors=True)

    def replay(self, apply, should_stop=lambda: False, refused=None):
        """Apply pending entries in order with `apply(entry)` (which raises on failure);
        stop at the first failure or when `should_stop()`. `refused` = (exception type,
        handler): an entry failing with that type is handed to `handler(entry, error)`,
        marked done and passed over. Returns (replayed, left)."""
        pending = self.pending()
        replayed = 0
        for entry in pending:
            if should_stop():
                break
            try:
                apply(entry)
            except Exception as error:  # noqa: BLE001 - the server is still away; try later
                if refused is None or not isinstance(error, refused[0]):
                    break
                refused[1](entry, error)
            self.mark_done(entry)
            replayed += 1
        self.clear_if_done()
        return replayed, len(pending) - replayed


def spooled_run_ids(root=None):
    root = root or spool_root()
    if not os.path.isdir(root):
        return []
    return sorted(name[: -len(".jsonl")] for name in os.listdir(root)
                  if name.endswith(".jsonl") and RUN_ID.fullmatch(name[: -len(".jsonl")]))
