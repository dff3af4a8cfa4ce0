"""The written listening conversations: what they teach holds, and they stay apart from the probes."""

import json
import re
from pathlib import Path

from corpora import listening, load_pairs
from corpora.listening import listening_pairs
from corpora.pairs import Pair

PROBES = Path(__file__).parent.parent / "corpora" / "probes.jsonl"
CHITCHAT = [Pair("how are you?", "good, and you?"), Pair("any plans tonight?", "just a movie at home.")]


def test_the_same_pairs_every_time_and_answers_come_from_the_turns_before():
    pairs = listening_pairs("valid", CHITCHAT)
    assert pairs == listening_pairs("valid", CHITCHAT)
    answers = [p for p in pairs if p.source.endswith("?") and p.context]
    assert len(answers) > 100
    frame = {
        "you",
        "your",
        "re",
        "are",
        "a",
        "an",
        "the",
        "in",
        "to",
        "told",
        "me",
        "said",
        "say",
        "is",
        "called",
        "it",
        "its",
        "name",
        "right",
        "moved",
        "come",
        "from",
        "live",
        "have",
        "drive",
        "play",
        "work",
        "as",
        "first",
        "major",
        "study",
        "favorite",
        "love",
        "language",
        "speak",
    } | set(listening.FAVOURITES)
    for pair in answers:
        fact = set(re.findall(r"[a-z]+", pair.reply.lower())) - frame
        assert fact and fact <= set(re.findall(r"[a-z]+", " ".join(pair.context).lower())), pair


def test_bad_news_gets_sympathy_and_good_news_joy():
    pairs = listening_pairs("valid", CHITCHAT)
    sorry = [p for p in pairs if re.search(r"\b(sorry|awful|sad|hard)\b", p.reply, re.I)]
    glad = [p for p in pairs if re.search(r"\b(congratulations|happy for you|great to hear|amazing)\b", p.reply, re.I)]
    assert sorry and glad
    assert not any(re.search(r"\b(great|nice|fun|cool|glad|congrat\w*)\b", p.reply, re.I) for p in sorry)


def test_no_probe_fact_or_news_is_written_and_no_probe_answer_is_a_fact():
    probes = [json.loads(line) for line in PROBES.read_text().splitlines() if line.strip()]
    stated = {p["turns"][0].lower() for p in probes if not p["kind"].startswith("korean")}
    written = {p.source.lower() for split in ("train", "valid", "test") for p in listening_pairs(split, CHITCHAT)}
    written_facts = {s for s in written if not s.endswith("?")}
    assert not stated & written_facts
    answers = {word for p in probes if p["kind"] == "memory" for word in re.findall(r"[a-z]+", p["must_match"].lower())}
    values = [*listening.NAMES, *listening.CITIES, *listening.PET_NAMES, *listening.JOBS, *listening.INSTRUMENTS]
    values += [*listening.CARS, *listening.STUDIES, *listening.LANGUAGES, *listening.MONTHS, *listening.NUMBERS]
    values += [v for favourites in listening.FAVOURITES.values() for v in favourites.split(",")]
    facts = {word for value in values for word in re.findall(r"[a-z]+", value.lower())} - {"a", "an", "the"}
    assert not answers & facts


def test_corpora_join_with_a_plus():
    joined = load_pairs("sample+sample", "train")
    assert len(joined) == 2 * len(load_pairs("sample", "train"))
