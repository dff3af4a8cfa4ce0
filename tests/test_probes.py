"""Behavioural probes (`chatbot evaluate --probes`): the shipped suite, the tests of a reply, and
the command's report on a real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatbot.cli import main
from training.probes import read_probes, repeats

SUITE = Path(__file__).parent.parent / "corpora" / "probes.jsonl"


def test_the_shipped_suite_has_every_kind_in_both_languages():
    probes = read_probes(SUITE)
    korean = [p for p in probes if p.kind.startswith("korean")]
    assert len(probes) - len(korean) >= 200 and len(korean) >= 60
    kinds = {p.kind for p in probes}
    for kind in ("memory", "answer", "mood-bad", "mood-good", "echo"):
        assert kind in kinds and f"korean-{kind.replace('-bad', '')}" in kinds, kind
    assert all(p.must_match or p.must_not_match for p in probes)


@pytest.mark.parametrize(
    "reply, repeated",
    [
        ("I have a dog and I also like the dog", True),
        ("Its blue, green, blue and green", True),
        ("I like it and I like you", True),  # a word pair twice
        ("I have a dog. Do you have one?", False),
        ("I think I will go, I guess", False),  # common words may come back
    ],
)
def test_a_reply_repeats_when_a_content_word_or_a_word_pair_comes_twice(reply, repeated):
    common = frozenset({"i", "have", "a", "do", "you", "will", "go", "guess", "think", "like"})
    assert repeats(reply, common) == repeated


def test_probes_report_rates_by_kind_and_list_the_failures(overfit_dir, sample_pairs, tmp_path, capsys):
    """The tiny model knows its pairs by heart: a probe whose test its reply meets passes, one
    whose test it cannot meet fails and is listed with the reply."""
    known = sample_pairs[0]
    word = max(known.reply.split(), key=len).strip(".,!?")
    lines = [
        {"kind": "echo", "turns": [known.source], "must_match": rf"\b{word}\b"},
        {"kind": "mood-bad", "turns": ["earlier turn", "reply", known.source], "must_not_match": rf"\b{word}\b"},
    ]
    probes = tmp_path / "probes.jsonl"
    probes.write_text("".join(json.dumps(p) + "\n" for p in lines), encoding="utf-8")
    args = ["evaluate", "--model", str(overfit_dir), "--probes", str(probes), "--strategy", "greedy", "--threads", "1"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    fresh = not repeats(known.reply, frozenset())
    assert out["probes"]["echo"] == float(fresh) and out["probes"]["mood-bad"] == 0.0
    assert out["probes_all"] == (0.5 if fresh else 0.0) and out["probes_strategy"]["strategy"] == "greedy"
    failure = next(f for f in out["probe_failures"] if f["kind"] == "mood-bad")
    assert failure["reply"] == known.reply and "test" in failure["failed"] and failure["turns"][-1] == known.source
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("probes (greedy): ") and f"-> {known.reply}" in text


@pytest.mark.parametrize(
    "line, why",
    [
        ("not json", "not a probe"),
        ('{"kind": "memory", "turns": []}', "turns"),
        ('{"kind": "repetition", "turns": ["hi"]}', "kind"),
        ('{"kind": "memory", "turns": ["hi"], "must_match": "("}', "not a probe"),
    ],
)
def test_a_bad_probe_file_is_one_line_and_a_failure(overfit_dir, tmp_path, capsys, line, why):
    probes = tmp_path / "probes.jsonl"
    probes.write_text('{"kind": "memory", "turns": ["hi"], "must_match": "x"}\n' + line + "\n", encoding="utf-8")
    assert main(["evaluate", "--model", str(overfit_dir), "--probes", str(probes)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{probes}:2:" in err and why in err
