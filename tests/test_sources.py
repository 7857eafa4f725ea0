"""eval.data.sources: every data source, its errors, and max_chars, without the real network."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eval.data.sources import (
    CLIMBMIX_URL_TEMPLATE,
    DEFAULTS,
    SOURCES,
    Corpus,
    DataError,
    DownloadError,
    fingerprint_documents,
    load_documents,
)

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
PLAY = "First Citizen:\nBefore we proceed.\n\nAll:\nSpeak, speak.\n\n\n  \nFirst Citizen:\nYou are resolved.\n"


def config(tmp_path, **overrides):
    return {**DEFAULTS, "val_fraction": 0.1, "test_fraction": 0.1, "cache_dir": str(tmp_path / "cache"), **overrides}


def write_parquet(path, texts, column="text"):
    pq.write_table(pa.table({column: texts, "id": list(range(len(texts)))}), path)
    return path


# --- corpus basics ------------------------------------------------------------------------------


def test_fingerprint_keeps_document_boundaries():
    assert fingerprint_documents(["ab", "c"]) != fingerprint_documents(["a", "bc"])
    assert fingerprint_documents(["ab", "c"]) == fingerprint_documents(["ab", "c"])
    assert fingerprint_documents(["a", "b"]) != fingerprint_documents(["b", "a"])


def test_unknown_source_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError) as info:
        load_documents(config(tmp_path, source="wikipedia"))
    assert "wikipedia" in str(info.value)
    assert all(name in str(info.value) for name in SOURCES)


# --- shakespeare --------------------------------------------------------------------------------


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason=f"{SHAKESPEARE} not present")
def test_shakespeare_from_local_path(tmp_path):
    corpus = load_documents(config(tmp_path, name="shakespeare", source="shakespeare", path=str(SHAKESPEARE)))
    assert isinstance(corpus, Corpus)
    assert corpus.documents[0] == "First Citizen:\nBefore we proceed any further, hear me speak."
    assert len(corpus.documents) > 5000
    assert all(doc == doc.strip() and doc for doc in corpus.documents)
    assert corpus.origin == str(SHAKESPEARE)
    assert 1_000_000 < corpus.num_chars < len(SHAKESPEARE.read_text())


def test_shakespeare_missing_path_is_named(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match="nope.txt"):
        load_documents(config(tmp_path, source="shakespeare", path=str(missing)))


def test_shakespeare_downloads_once_and_splits_on_blank_lines(file_server, tmp_path):
    url = file_server.serve("/input.txt", PLAY.encode())
    cfg = config(tmp_path, name="shakespeare", source="shakespeare", url=url)
    corpus = load_documents(cfg)
    assert corpus.documents == [
        "First Citizen:\nBefore we proceed.",
        "All:\nSpeak, speak.",
        "First Citizen:\nYou are resolved.",
    ]
    assert corpus.origin == url
    assert (tmp_path / "cache" / "downloads" / "shakespeare" / "input.txt").read_text() == PLAY
    again = load_documents(cfg)
    assert again.fingerprint == corpus.fingerprint
    assert len(file_server.requests_for("/input.txt")) == 1  # the second load used the cache


def test_shakespeare_checks_sha256(file_server, tmp_path):
    url = file_server.serve("/input.txt", PLAY.encode())
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        load_documents(config(tmp_path, source="shakespeare", url=url, sha256="ab" * 32))


# --- tinystories --------------------------------------------------------------------------------


def test_tinystories_splits_on_endoftext(file_server, tmp_path):
    text = "Once upon a time, a cat.\n<|endoftext|>\nTom had a red ball.\nIt was fun.\n<|endoftext|>\n\n<|endoftext|>The end."
    url = file_server.serve("/TinyStoriesV2-GPT4-valid.txt", text.encode())
    corpus = load_documents(config(tmp_path, name="tinystories", source="tinystories", url=url))
    assert corpus.documents == ["Once upon a time, a cat.", "Tom had a red ball.\nIt was fun.", "The end."]


# --- climbmix -----------------------------------------------------------------------------------


def test_climbmix_reads_the_text_column_of_each_shard(file_server, tmp_path):
    for index, texts in enumerate([["alpha doc", "beta doc"], ["gamma doc"]]):
        path = write_parquet(tmp_path / f"shard_{index:05d}.parquet", texts)
        file_server.serve(f"/shards/shard_{index:05d}.parquet", path.read_bytes())
    template = file_server.base_url + "/shards/shard_{index:05d}.parquet"
    corpus = load_documents(config(tmp_path, name="climbmix", source="climbmix", url_template=template, num_shards=2))
    assert corpus.documents == ["alpha doc", "beta doc", "gamma doc"]
    assert (tmp_path / "cache" / "downloads" / "climbmix" / "shard_00001.parquet").exists()


def test_climbmix_max_chars_skips_later_shards(file_server, tmp_path):
    for index in range(2):
        path = write_parquet(tmp_path / f"s{index}.parquet", ["x" * 10, "y" * 10])
        file_server.serve(f"/shard_{index:05d}.parquet", path.read_bytes())
    template = file_server.base_url + "/shard_{index:05d}.parquet"
    corpus = load_documents(config(tmp_path, source="climbmix", url_template=template, num_shards=2, max_chars=15))
    assert corpus.documents == ["x" * 10, "y" * 10]
    assert file_server.requests_for("/shard_00001.parquet") == []


def test_climbmix_explicit_urls_and_missing_column(file_server, tmp_path):
    path = write_parquet(tmp_path / "a.parquet", ["hello"], column="content")
    url = file_server.serve("/a.parquet", path.read_bytes())
    with pytest.raises(DataError) as info:
        load_documents(config(tmp_path, source="climbmix", urls=[url]))
    assert "'text'" in str(info.value) and "content" in str(info.value)
    corpus = load_documents(config(tmp_path, source="climbmix", urls=[url], text_column="content"))
    assert corpus.documents == ["hello"]


def test_climbmix_missing_shard_is_a_download_error(file_server, tmp_path):
    template = file_server.base_url + "/shard_{index:05d}.parquet"
    with pytest.raises(DownloadError, match="404"):
        load_documents(config(tmp_path, source="climbmix", url_template=template))


def test_climbmix_template_needs_an_index_placeholder(tmp_path):
    with pytest.raises(DataError, match="placeholder"):
        load_documents(config(tmp_path, source="climbmix", url_template="http://127.0.0.1:9/shard.parquet"))


def test_climbmix_default_template_is_autoresearch_shards():
    assert CLIMBMIX_URL_TEMPLATE.format(index=7).endswith("/karpathy/climbmix-400b-shuffle/resolve/main/shard_00007.parquet")


# --- files --------------------------------------------------------------------------------------


def test_files_reads_txt_jsonl_and_parquet_in_order(tmp_path):
    (tmp_path / "a.txt").write_text("para one\nline two\n\n\npara two\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "json doc 1"}) + "\n\n" + json.dumps({"text": "json doc 2", "x": 1}) + "\n")
    write_parquet(tmp_path / "c.parquet", ["pq doc"])
    paths = [str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl"), str(tmp_path / "c.parquet")]
    corpus = load_documents(config(tmp_path, source="files", name="mine", paths=paths))
    assert corpus.documents == ["para one\nline two", "para two", "json doc 1", "json doc 2", "pq doc"]
    assert str(tmp_path / "a.txt") in corpus.origin


def test_files_globs_and_doc_separator(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "2.txt").write_text("c\n\nstill c")
    (tmp_path / "docs" / "1.txt").write_text("a\n---\nb")
    corpus = load_documents(config(tmp_path, source="files", paths=[str(tmp_path / "docs" / "*.txt")], doc_separator="---"))
    assert corpus.documents == ["a", "b", "c\n\nstill c"]


def test_files_entry_matching_nothing_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nothing-\*\.txt"):
        load_documents(config(tmp_path, source="files", paths=[str(tmp_path / "nothing-*.txt")]))
    with pytest.raises(DataError, match="absent.txt"):
        load_documents(config(tmp_path, source="files", paths=[str(tmp_path / "absent.txt")]))
    with pytest.raises(DataError, match="data.paths"):
        load_documents(config(tmp_path, source="files", paths=[]))


def test_files_jsonl_missing_field_names_file_line_and_column(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"body": "no text"}) + "\n")
    with pytest.raises(DataError) as info:
        load_documents(config(tmp_path, source="files", paths=[str(path)]))
    message = str(info.value)
    assert str(path) in message and "line 2" in message and "'text'" in message and "body" in message


def test_files_jsonl_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(DataError, match="line 2"):
        load_documents(config(tmp_path, source="files", paths=[str(path)]))
    path.write_text('{"text": "ab"}\n{"text": "c\x01d"}\n')  # a raw control character inside a string
    with pytest.raises(DataError, match=r"line 2: not valid JSON \(Invalid control character at: column 12\)"):
        load_documents(config(tmp_path, source="files", paths=[str(path)]))


def test_files_parquet_missing_column_lists_columns(tmp_path):
    path = write_parquet(tmp_path / "e.parquet", ["x"], column="content")
    with pytest.raises(DataError) as info:
        load_documents(config(tmp_path, source="files", paths=[str(path)]))
    assert "content" in str(info.value) and "id" in str(info.value) and str(path) in str(info.value)


def test_files_unsupported_extension(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match=r"f\.csv.*\.txt, \.jsonl, \.parquet"):
        load_documents(config(tmp_path, source="files", paths=[str(path)]))


def test_max_chars_stops_adding_documents(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("\n\n".join(["aaaa", "bbbb", "cccc", "dddd"]))
    corpus = load_documents(config(tmp_path, source="files", paths=[str(path)], max_chars=6))
    assert corpus.documents == ["aaaa", "bbbb"]


# --- pydocs -------------------------------------------------------------------------------------


def test_pydocs_is_english_prose_deterministic_and_cached(tmp_path):
    cfg = config(tmp_path)  # the default source
    first = load_documents(cfg)  # builds from the standard library
    assert list((tmp_path / "cache" / "pydocs").glob("*.txt"))
    second = load_documents(cfg)  # reads the cache
    assert second.documents == first.documents
    assert second.fingerprint == first.fingerprint
    assert len(first.documents) > 150
    assert first.num_chars > 500_000
    assert all(len(doc) >= 200 for doc in first.documents)
    words = " ".join(first.documents[:50]).lower().split()
    assert words.count("the") > 0.02 * len(words)
    assert any("Return" in doc for doc in first.documents)
    limited = load_documents({**cfg, "max_chars": 10_000})
    assert limited.documents == first.documents[: len(limited.documents)]
    assert 10_000 <= limited.num_chars
