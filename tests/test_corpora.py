import pytest

from corpora import CorpusError, load_pairs
from corpora.files import read_jsonl, read_tsv


def test_chitchat_split_counts_match_the_evaluation_doc():
    counts = {split: load_pairs("chitchat", split) for split in ("train", "valid", "test")}
    assert [len(counts[s]) for s in ("train", "valid", "test")] == [125_961, 2_876, 2_211]
    assert sum(len(p.reply.split()) for p in counts["test"]) == 25_044
    test = counts["test"]
    assert sum(1 for p in test if p.context) > 2_000  # most test pairs have turns before them
    first = next(i for i, p in enumerate(test) if len(p.context) >= 2)
    assert test[first].context[-1] != test[first].source and all(isinstance(t, str) for t in test[first].context)


def test_sample_corpus_has_english_and_korean(sample_pairs):
    assert 200 <= len(sample_pairs) <= 500
    assert any("안녕" in p.source for p in sample_pairs)
    assert all(p.source and p.reply for p in sample_pairs)


def test_tsv_pairs_and_whitespace_folding(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("hi  there\thello\n\nhow are you?\tfine,\tthanks\n", encoding="utf-8")
    pairs = read_tsv(path)
    assert [tuple(p) for p in pairs] == [("hi there", "hello", ()), ("how are you?", "fine, thanks", ())]


def test_tsv_line_without_tab_names_file_and_line(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("a\tb\nno tab here\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"p\.tsv:2: .*no tab"):
        read_tsv(path)


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_bytes(b"a\tb\nbad \xff\tbyte\n")
    with pytest.raises(CorpusError, match=r"p\.tsv:2: invalid UTF-8"):
        read_tsv(path)


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        load_pairs(str(tmp_path / "nope.tsv"))


def test_jsonl_turns_become_consecutive_pairs_and_empty_turns_are_counted(tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    path.write_text('["a", "b", "  ", "c"]\n["x", "y"]\n', encoding="utf-8")
    pairs = read_jsonl(path)
    assert [tuple(p) for p in pairs] == [("a", "b", ()), ("b", "c", ("a",)), ("x", "y", ())]  # with the turns before
    assert "skipped 1 empty turns" in capsys.readouterr().err


def test_jsonl_bad_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('["a", "b"]\n{"not": "a list"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"c\.jsonl:2: expected a JSON list"):
        read_jsonl(path)


def test_unknown_corpus_name():
    with pytest.raises(CorpusError, match="not a corpus name"):
        load_pairs("wikipedia")
