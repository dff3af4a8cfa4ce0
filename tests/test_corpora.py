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


def test_csv_pairs_by_header_with_quotes_and_extra_columns(tmp_path):
    from corpora.files import read_csv

    path = tmp_path / "q.csv"
    path.write_text(
        'Q,A,label\n12시 땡!,하루가 또 가네요.,0\n"hi, you","line one\nline two",1\n,empty question,0\n', "utf-8"
    )
    assert [tuple(p) for p in read_csv(path)] == [
        ("12시 땡!", "하루가 또 가네요.", ()),
        ("hi, you", "line one line two", ()),
    ]
    path.write_text("label,reply,source\n0,hello,hi\n", encoding="utf-8")
    assert [tuple(p) for p in read_csv(path)] == [("hi", "hello", ())]


@pytest.mark.parametrize(
    "text, error",
    [
        ("", "empty"),
        ("question,answer\na,b\n", "must name the columns Q,A or source,reply"),
        ("Q,A,label\nfine,row,0\nshort\n", r"q\.csv:3: expected at least 2 columns"),
    ],
)
def test_bad_csv_is_a_file_and_line_error(tmp_path, text, error):
    path = tmp_path / "q.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CorpusError, match=error):
        load_pairs(str(path))


def test_a_file_of_100_pairs_or_more_is_split_by_its_messages(tmp_path):
    path = tmp_path / "many.tsv"
    path.write_text("".join(f"message {i // 2}\treply {i}\n" for i in range(400)), encoding="utf-8")
    splits = {s: load_pairs(str(path), s) for s in ("train", "valid", "test")}
    assert sum(len(v) for v in splits.values()) == 400 and all(splits.values())
    messages = {s: {p.source for p in v} for s, v in splits.items()}
    assert not (messages["train"] & messages["test"]) and not (messages["valid"] & messages["test"])
    small = tmp_path / "few.tsv"
    small.write_text("a\tb\nc\td\n", encoding="utf-8")
    assert load_pairs(str(small), "test") == load_pairs(str(small), "train")  # too few to hold out
