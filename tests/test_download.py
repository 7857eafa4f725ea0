"""eval.data.download against a scripted HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os

import pytest

from eval.data import DataError
from eval.data.download import DownloadError, download, file_sha256

PAYLOAD = bytes(range(256)) * 64 + b"tail"  # 16 KiB + 4 bytes, every byte value present
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def part_of(dest):
    return dest.with_suffix(dest.suffix + ".part")


def test_downloads_verifies_and_writes_digest(file_server, tmp_path):
    url = file_server.serve("/data.bin", PAYLOAD)
    dest = tmp_path / "sub" / "data.bin"
    assert download(url, dest, sha256=DIGEST, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not part_of(dest).exists()
    assert dest.with_suffix(".bin.sha256").read_text().split()[0] == DIGEST


def test_dropped_connection_keeps_part_and_next_call_resumes_with_range(file_server, tmp_path):
    url = file_server.serve("/data.bin", PAYLOAD, drop_after=5000)
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="run again to resume") as info:
        download(url, dest, sha256=DIGEST, progress=False, chunk_bytes=1024)
    assert url in str(info.value)
    assert not dest.exists()
    assert part_of(dest).read_bytes() == PAYLOAD[:5000]

    download(url, dest, sha256=DIGEST, progress=False, chunk_bytes=1024)
    requests = file_server.requests_for("/data.bin")
    assert len(requests) == 2
    assert "Range" not in requests[0]
    assert requests[1]["Range"] == "bytes=5000-"
    assert dest.read_bytes() == PAYLOAD
    assert file_sha256(dest) == DIGEST
    assert not part_of(dest).exists()


def test_server_without_range_support_restarts_from_zero(file_server, tmp_path):
    url = file_server.serve("/data.bin", PAYLOAD, ignore_range=True)
    dest = tmp_path / "data.bin"
    part_of(dest).write_bytes(b"x" * 3000)  # stale bytes that must not survive
    download(url, dest, sha256=DIGEST, progress=False)
    assert file_server.requests_for("/data.bin")[0]["Range"] == "bytes=3000-"
    assert dest.read_bytes() == PAYLOAD


def test_part_longer_than_the_file_starts_over(file_server, tmp_path):
    url = file_server.serve("/data.bin", PAYLOAD)
    dest = tmp_path / "data.bin"
    part_of(dest).write_bytes(b"y" * (len(PAYLOAD) + 10))  # server answers 416
    download(url, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [r.get("Range") for r in file_server.requests_for("/data.bin")] == [f"bytes={len(PAYLOAD) + 10}-", None]


def test_sha256_mismatch_deletes_everything_and_names_both_digests(file_server, tmp_path):
    url = file_server.serve("/data.bin", PAYLOAD)
    dest = tmp_path / "data.bin"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download(url, dest, sha256=wrong, progress=False)
    message = str(info.value)
    assert url in message and wrong in message and DIGEST in message
    assert not dest.exists()
    assert not part_of(dest).exists()
    assert not dest.with_suffix(".bin.sha256").exists()


def test_resumed_transfer_is_hashed_whole(file_server, tmp_path):
    """A resume over a corrupt .part is caught by the sha256 over the whole file."""
    url = file_server.serve("/data.bin", PAYLOAD)
    dest = tmp_path / "data.bin"
    part_of(dest).write_bytes(b"z" * 100)
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(url, dest, sha256=DIGEST, progress=False)
    assert not dest.exists() and not part_of(dest).exists()


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_names_url_and_status(file_server, tmp_path, status):
    url = file_server.serve("/data.bin", PAYLOAD, status=status)
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError) as info:
        download(url, dest, progress=False)
    assert url in str(info.value) and str(status) in str(info.value)
    assert isinstance(info.value, DataError)
    assert not dest.exists()


def test_unknown_path_is_404(file_server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(file_server.url("/missing.txt"), tmp_path / "missing.txt", progress=False)


def test_unreachable_server_is_a_download_error(file_server, tmp_path):
    url = file_server.url("/data.bin")
    file_server.close()
    with pytest.raises(DownloadError, match="could not download"):
        download(url, tmp_path / "data.bin", progress=False, timeout=5)


def test_existing_dest_is_returned_without_network(file_server, tmp_path):
    url = file_server.serve("/data.bin", PAYLOAD)
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)
    assert download(url, dest, sha256=DIGEST, progress=False) == dest
    assert download(url, dest, progress=False) == dest
    assert file_server.requests_for("/data.bin") == []


def test_existing_dest_with_wrong_digest_names_the_file_to_delete(file_server, tmp_path):
    url = file_server.serve("/data.bin", PAYLOAD)
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"something else")
    with pytest.raises(DownloadError, match="Delete") as info:
        download(url, dest, sha256=DIGEST, progress=False)
    assert str(dest) in str(info.value)
    assert dest.read_bytes() == b"something else"
    assert file_server.requests_for("/data.bin") == []


def test_progress_goes_to_stderr_only_when_asked(file_server, tmp_path, capsys):
    url = file_server.serve("/data.bin", PAYLOAD)
    download(url, tmp_path / "a.bin", progress=False)
    assert capsys.readouterr().err == ""
    download(url, tmp_path / "b.bin", progress=True)
    err = capsys.readouterr().err
    assert "b.bin" in err and "MB/s" in err and "100%" in err
    assert err.count("\n") == 1  # one line, rewritten in place


def test_dest_without_suffix(file_server, tmp_path):
    url = file_server.serve("/input", PAYLOAD)
    dest = tmp_path / "input"
    download(url, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert sorted(os.listdir(tmp_path)) == ["input", "input.sha256"]
