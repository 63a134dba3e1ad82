"""The spool's journal: crash-safe lines, replayed in order, never twice."""

import os

from regaudit.tracking.spool import Spool, spooled_run_ids


def test_entries_replay_in_order_and_a_done_entry_is_never_replayed(spool_dir, tmp_path):
    spool = Spool("run1")
    artifact = tmp_path / "part.parquet"
    artifact.write_bytes(b"PAR1")
    first = spool.add("metrics", [["k", 1.0, 5, 0]])
    spool.add("artifact", {"artifact_path": "regaudit/x"}, str(artifact))
    spool.add("tags", {"a": "b"})
    seen = []

    def fail_on_tags(entry):
        if entry["kind"] == "tags":
            raise ConnectionError("server away")
        seen.append(entry["id"])

    assert spool.replay(fail_on_tags) == (2, 1)
    assert seen[0] == first and len(seen) == 2
    assert [e["kind"] for e in Spool("run1").pending()] == ["tags"]  # a fresh reader agrees
    assert spool.replay(lambda entry: seen.append(entry["id"])) == (1, 0)
    assert len(seen) == len(set(seen)) == 3
    assert not os.path.exists(spool.path) and spooled_run_ids() == []


def test_a_half_written_or_damaged_line_is_skipped_not_replayed(spool_dir):
    spool = Spool("run2")
    spool.add("tags", {"a": "1"})
    spool.add("tags", {"b": "2"})
    with open(spool.path, "a", encoding="utf-8") as handle:
        handle.write('0badc0de {"id": "x", "kind": "tags", "payload": {"c": "3"}}\n')  # bad crc
        handle.write(open(spool.path, encoding="utf-8").readline()[:25])  # cut short: no newline
    pending, broken = spool.entries()
    assert [e["payload"] for e in pending] == [{"a": "1"}, {"b": "2"}]
    assert broken == 2
    applied = []
    assert spool.replay(lambda e: applied.append(e["payload"])) == (2, 0)
    assert applied == [{"a": "1"}, {"b": "2"}]


def test_an_artifact_is_copied_into_the_spool_at_once(spool_dir, tmp_path):
    source = tmp_path / "model.json"
    source.write_text("{}")
    spool = Spool("run3")
    spool.add("artifact", {"artifact_path": "regaudit"}, str(source))
    source.unlink()  # the writer's temporary file is gone; the spool's copy stays
    (entry,) = spool.pending()
    assert open(entry["file"]).read() == "{}"
    spool.replay(lambda e: None)
    assert not os.path.exists(entry["file"])


def test_a_journal_edited_by_hand_cannot_reach_outside_the_spool_or_the_run(spool_dir, tmp_path):
    """An artifact entry pointing at a file outside the spool, an artifact path with `..`
    or an absolute one, an unknown kind and a 5 MB line are skipped as damaged; the
    honest entries still replay; a run id that names a path is refused in one line."""
    import json
    import zlib

    import pytest

    from regaudit.errors import UsageError
    from regaudit.tracking.spool import MAX_LINE

    secret = tmp_path / "secret.txt"
    secret.write_text("do not upload")
    spool = Spool("run4")
    spool.add("tags", {"a": "1"})
    honest = tmp_path / "part.parquet"
    honest.write_bytes(b"PAR1")
    spool.add("artifact", {"artifact_path": "regaudit/activations"}, str(honest))
    inside = Spool("run4").pending()[1]["file"]

    def line(record):
        text = json.dumps(record, sort_keys=True, separators=(",", ":"))
        return f"{zlib.crc32(text.encode()):08x} {text}\n"

    hostile = [
        {"id": "e1", "kind": "artifact", "payload": {"artifact_path": "regaudit"}, "file": str(secret)},
        {"id": "e2", "kind": "artifact", "payload": {"artifact_path": "regaudit/../../x"}, "file": inside},
        {"id": "e3", "kind": "artifact", "payload": {"artifact_path": "/etc"}, "file": inside},
        {"id": "e4", "kind": "shell", "payload": "rm -rf /"},
        {"id": "e5", "kind": "artifact", "payload": {"artifact_path": "regaudit"},
         "file": os.path.join(spool.files, "..", "..", "secret.txt")},
    ]
    with open(spool.path, "a", encoding="utf-8") as handle:
        for record in hostile:
            handle.write(line(record))
        handle.write("0" * (MAX_LINE + 1_000_000) + "\n")
    spool.add("tags", {"b": "2"})
    pending, broken = Spool("run4").entries()
    assert [e["kind"] for e in pending] == ["tags", "artifact", "tags"]
    assert broken == len(hostile) + 1
    applied = []
    assert Spool("run4").replay(lambda e: applied.append(e.get("file"))) == (3, 0)
    assert str(secret) not in applied
    for bad in ("../../etc", "a/b", "x" * 100, ""):
        with pytest.raises(UsageError, match="is not a run id"):
            Spool(bad)
