"""Atomic writes: the old file or the new one, never half of either; the temporary file is `<name>.tmp`."""

from pathlib import Path

import pytest

from eval.files import write_atomic


def test_text_and_bytes_are_written_whole_and_the_directory_is_made(tmp_path):
    path = tmp_path / "deep" / "er" / "results.tsv"
    write_atomic(path, "héllo\r\nworld\n")
    assert path.read_bytes() == "héllo\r\nworld\n".encode("utf-8")  # UTF-8, newlines as given
    write_atomic(path, b"\x00\xffbytes")
    assert path.read_bytes() == b"\x00\xffbytes"
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.tsv"]  # no temporary file is left


def test_the_callback_runs_between_the_write_and_the_rename(tmp_path):
    path = tmp_path / "results.tsv"
    path.write_text("old\n")
    seen = []

    def before_replace():
        seen.append(((tmp_path / "results.tsv.tmp").read_text(), path.read_text()))

    write_atomic(path, "new\n", before_replace=before_replace)
    assert seen == [("new\n", "old\n")] and path.read_text() == "new\n"


def test_a_crash_before_the_rename_leaves_the_old_file_and_the_next_write_recovers(tmp_path):
    path = tmp_path / "results.tsv"
    path.write_text("old\n")

    def crash():
        raise KeyboardInterrupt  # what a kill at the failpoint leaves behind

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "new\n", before_replace=crash)
    assert path.read_text() == "old\n" and (tmp_path / "results.tsv.tmp").read_text() == "new\n"
    write_atomic(path, "newer\n")
    assert path.read_text() == "newer\n" and not (tmp_path / "results.tsv.tmp").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_a_failed_write_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "results.tsv"
    path.write_text("old\n")
    (tmp_path / "results.tsv.tmp").symlink_to("/dev/full")  # every write there fails, as on a full disk
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, "new\n")
    assert path.read_text() == "old\n"
