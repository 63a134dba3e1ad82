"""The spool's journal: crash-safe lines, replayed in order, never twice."""

import os

from regaudit.spool import Spool, spooled_run_ids


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
