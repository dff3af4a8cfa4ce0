"""The written listening conversations: what they teach holds, and they stay apart from the probes."""

import json
import re
from pathlib import Path

from corpora import listening, load_pairs
from corpora.listening import listening_pairs
from corpora.pairs import Pair

PROBES = Path(__file__).parent.parent / "corpora" / "probes.jsonl"
# the questions asked of the bot about itself, a favourite's sort named each way it may be
OF_ME = {
    q.format(f=f) for questions, _ in listening.ASKED_OF_ME.values() for q in questions for f in listening.FAVOURITES
}
CHITCHAT = [Pair("how are you?", "good, and you?"), Pair("any plans tonight?", "just a movie at home.")]


def test_the_same_pairs_every_time_and_answers_come_from_the_turns_before():
    pairs = listening_pairs("valid", CHITCHAT)
    assert pairs == listening_pairs("valid", CHITCHAT)
    answers = [p for p in pairs if p.source.endswith("?") and p.context and p.source not in OF_ME]
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
        "remember",
        "that",
        "ll",
        "i",
        "got",
        "tell",
        "more",
        "oh",
        "really",
        "cool",
        "good",
        "know",
        "s",
        "interesting",
        "birthday",
    } | set(listening.FAVOURITES)
    for pair in answers:
        fact = set(re.findall(r"[a-z]+", pair.reply.lower())) - frame
        in_sight = " ".join(pair.context[-listening.READ_TURNS :])  # the turns a model reads
        assert fact and fact <= set(re.findall(r"[a-z]+", in_sight.lower())), pair


def test_asked_in_turn_the_bot_gives_its_own_and_the_persons_fact_is_asked_back_after():
    """ "I live in Denver." ... "and where do you live?" -> "I live in Oslo." (never Denver), then
    "where do I live?": "you" and "I" told apart in one conversation."""
    pairs = listening_pairs("valid", CHITCHAT)
    mine = [(i, p) for i, p in enumerate(pairs) if p.source.lower() in OF_ME]
    assert len(mine) > 20
    frame = {"i", "in", "my", "m", "is", "the", "a", "an", "yes", "love", "live", "name", "study", "major", "play"}
    frame |= {"speak", "work", "as", "mostly", "birthday", "favorite", "have", "for"} | set(listening.FAVOURITES)
    first = [p for _, p in mine if not p.context]  # a conversation opened by asking the bot about itself
    assert len(first) > 20 and {p.reply.split()[0] for p in first} >= {"My", "I"}
    for i, pair in mine:
        if not pair.context:
            continue
        theirs = set(re.findall(r"[a-z]+", pair.context[-2].lower())) - frame
        assert not set(re.findall(r"[a-z]+", pair.reply.lower())) - frame & theirs, pair
        assert pairs[i + 1].context[-2:] == (pair.source, pair.reply)  # then the person's fact is asked back


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
    values += [v for _, _, named in listening.PLANS for v in listening.items(named)]
    facts = {word for value in values for word in re.findall(r"[a-z]+", value.lower())} - {"a", "an", "the"}
    assert not answers & facts


def test_no_echo_probe_thing_is_among_the_named_values():
    """What the echo probes ask to be picked up ("Titanic", "Canada") is never a written value."""
    probes = [json.loads(line) for line in PROBES.read_text().splitlines() if line.strip()]
    echo = [re.compile(p["must_match"]) for p in probes if p["kind"] == "echo"]
    values = [v for _, _, named in listening.PLANS for v in listening.items(named)]
    values += [v for favourites in listening.FAVOURITES.values() for v in favourites.split(",")]
    values += [*listening.NAMES, *listening.CITIES, *listening.PET_NAMES, *listening.INSTRUMENTS, *listening.CARS]
    assert len(values) > 500
    assert not [(v, e.pattern) for v in values for e in echo if e.search(v.lower())]


def test_corpora_join_with_a_plus():
    joined = load_pairs("sample+sample", "train")
    assert len(joined) == 2 * len(load_pairs("sample", "train"))


def test_every_written_turn_is_whole():
    """No turn is a fragment of a list item cut at a comma ("저런" and " 힘내세요." for "저런, 힘내세요."),
    nor holds a slot left unfilled ("what's your favorite {f}?")."""
    from corpora.listening_ko import listening_pairs_ko

    for pair in listening_pairs("train", CHITCHAT) + listening_pairs_ko("train"):
        for turn in (pair.source, pair.reply, *pair.context):
            assert turn == turn.strip() and len(turn) > 2, pair
            assert "{" not in turn and "}" not in turn, pair


def test_korean_particles_follow_the_word_before():
    from corpora.listening_ko import particle

    assert particle("서준", "이야") == "서준이야" and particle("하은", "이야") == "하은이야"
    assert particle("지우", "이야") == "지우야" and particle("수아", "을") == "수아를"
    assert particle("인천", "으로") == "인천으로" and particle("서울", "으로") == "서울로"
    assert particle("세종", "으로") == "세종으로" and particle("기타", "이요") == "기타요"


def test_korean_conversations_stay_apart_from_the_probes_and_answer_from_the_turns_before():
    from corpora.listening_ko import listening_pairs_ko

    probes = [json.loads(line) for line in PROBES.read_text().splitlines() if line.strip()]
    korean = [p for p in probes if p["kind"].startswith("korean")]
    stated = {p["turns"][0] for p in korean}
    pairs = [p for split in ("train", "valid", "test") for p in listening_pairs_ko(split)]
    assert not stated & {p.source for p in pairs}
    answers = {w for p in korean if p["kind"] == "korean-memory" for w in re.findall(r"[가-힣]+", p["must_match"])}
    asked = [p for p in pairs if p.context]
    assert asked and not any(a in p.reply for p in asked for a in answers)
    for pair in asked[:300]:
        if pair.source.endswith("?"):  # the answer's fact (a word's stem, before its particle) was said before
            before = " ".join(pair.context)
            assert any(word[:2] in before for word in re.findall(r"[가-힣]+", pair.reply)), pair
