"""Korean: a Korean message goes to the Korean model, and retraining on Korean corrections gives
replies of real Korean pieces (never half a character)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatbot.decoding import GreedySettings, reply
from chatbot.languages import language_of
from chatbot.modeldir import load_model
from chatbot.storage import Storage
from corpora import load_pairs
from tests.conftest import write_tsv
from training.train import TrainConfig, train

KOREAN_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "korean-chatbot" / "ChatbotData.csv"


def test_the_language_of_a_message():
    assert language_of("안녕하세요, 오늘 기분이 어때요?") == "ko"
    assert language_of("hello there") == "en" and language_of("ok 그래") == "ko" and language_of("123 !!") == "en"
    assert language_of("I love 김치 and pizza and pasta") == "en"


@pytest.fixture(scope="module")
def korean_model(tmp_path_factory):
    """A tiny model that learned the sample corpus's Korean pairs by heart, its tokenizer theirs."""
    from chatbot.model import ModelConfig

    root = tmp_path_factory.mktemp("korean")
    pairs = [p for p in load_pairs("sample") if language_of(p.source) == "ko" and language_of(p.reply) == "ko"]
    corpus = write_tsv(root / "korean.tsv", pairs)
    cfg = TrainConfig(corpus=str(corpus), vocab_size=500, epochs=300, max_tokens=2000, lr=1e-2, warmup_steps=10,
                      eval_every=100, patience=100, seed=3, device="cpu", blank_source=0.0)  # fmt: skip
    train(root / "model", ModelConfig(embedding_dim=48, hidden_size=96, dropout=0.0, context_turns=0), cfg, quiet=True)
    return root / "model", corpus, pairs


def test_retraining_on_a_korean_correction_makes_it_stick_in_whole_characters(korean_model, tmp_path):
    model_dir, corpus, pairs = korean_model
    model, tokenizer, _ = load_model(model_dir)
    message, correction = "배고파요", "김치찌개 먹고 싶어요."  # every syllable is one the tokenizer has
    assert tokenizer.byte_share(tokenizer.encode(correction)) == 0
    store = Storage(tmp_path / "chat.db")
    conversation = store.new_conversation("한국어")
    for _ in range(3):  # corrected three times in the log, in three exchanges
        u = store.add_message(conversation, "user", message)
        r = reply(model, tokenizer, [message], GreedySettings())[0][0]
        b = store.add_message(conversation, "bot", r.text, reply_to=u)
        store.correct(b, correction)
    store.close()
    out = tmp_path / "retrained"
    argv = ["retrain", "--db", str(tmp_path / "chat.db"), "--model", str(model_dir), "--out", str(out), "--replay"]
    argv += [str(corpus), "--epochs", "60", "--lr", "0.005", "--eval-every", "20", "--patience", "100"]
    argv += ["--device", "cpu", "--threads", os.environ.get("CHATBOT_TEST_THREADS", "2"), "--no-benchmark", "--force"]
    argv += ["--every-correction"]  # the tiny model would not have begun it so: trained all the same
    result = subprocess.run([sys.executable, "-m", "chatbot", *argv], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not meaningful" not in result.stdout  # its pieces are Hangul, not bytes
    new, tokenizer, _ = load_model(out)
    got = reply(new, tokenizer, [message], GreedySettings())[0][0]
    assert got.text == correction and "\ufffd" not in got.text


@pytest.mark.skipif(not KOREAN_CORPUS.exists(), reason="the Korean chatbot corpus is not beside the project")
def test_the_korean_corpus_reads_with_its_fixed_split():
    splits = {s: load_pairs(str(KOREAN_CORPUS), s) for s in ("train", "valid", "test")}
    assert sum(map(len, splits.values())) == 11_823
    assert 500 < len(splits["test"]) < 700 and 500 < len(splits["valid"]) < 700


def test_the_bundled_models_answer_each_message_in_its_language(tmp_path):
    """`chatbot reply` without --model: the bundled English model, and the bundled Korean one for
    a Korean message, in one run, as a new user types them."""
    lines = ["안녕하세요, 오늘 기분이 어때요?", "how was your weekend?", "주말에 뭐 했어?"]
    env = {**os.environ, "CHATBOT_DB": str(tmp_path / "unused.db")}
    done = subprocess.run(
        [sys.executable, "-m", "chatbot", "reply", "--threads", "1", "--strategy", "greedy"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    replies = done.stdout.splitlines()
    assert len(replies) == 3 and all(replies), replies
    assert [language_of(r) for r in replies] == ["ko", "en", "ko"], replies
    assert "\ufffd" not in done.stdout


def test_the_chat_loads_the_korean_model_at_the_first_korean_message(tmp_path):
    from chatbot.languages import BUNDLED_MODELS
    from chatbot.session import open_session

    session = open_session(BUNDLED_MODELS["en"], tmp_path / "chat.db", False, "cpu", "greedy", None)
    try:
        assert session.companions == {} and set(session.companion_paths) == {"ko"}  # English alone in memory
        engine, tokenizer, path = session.replier_for("how are you?")
        assert path == str(BUNDLED_MODELS["en"]) and session.companions == {}
        engine, tokenizer, path = session.replier_for("오늘 기분이 어때요?")
        assert path == str(BUNDLED_MODELS["ko"]) and set(session.companions) == {"ko"}
        assert session.replier_for("배고파")[0] is engine  # loaded once
    finally:
        session.storage.close()


def lineage_child(parent: Path, model_dir: Path, at: Path) -> Path:
    """A copy of `model_dir` whose config.json says it was retrained from `parent`."""
    import json
    import shutil

    child = shutil.copytree(model_dir, at)
    config = json.loads((child / "config.json").read_text())
    config["lineage"] = {"parent": str(parent)}
    (child / "config.json").write_text(json.dumps(config))
    return child


def test_a_model_retrained_from_a_bundled_one_keeps_its_language_and_companion(overfit_dir, tmp_path):
    from chatbot.languages import BUNDLED_MODELS, bundled_companions, bundled_language

    child = lineage_child(BUNDLED_MODELS["en"], overfit_dir, tmp_path / "child")
    grandchild = lineage_child(child, overfit_dir, tmp_path / "grandchild")
    orphan = lineage_child(tmp_path / "removed", overfit_dir, tmp_path / "orphan")
    looped = lineage_child(tmp_path / "looped", overfit_dir, tmp_path / "looped")
    assert [bundled_language(m) for m in (BUNDLED_MODELS["ko"], child, grandchild)] == ["ko", "en", "en"]
    assert [bundled_language(m) for m in (overfit_dir, orphan, looped)] == [None, None, None]
    for n, odd in enumerate(["a\x00b", "x" * 5000]):  # a lineage no path can name ends there, quietly
        assert bundled_language(lineage_child(odd, overfit_dir, tmp_path / f"odd{n}")) is None
    assert set(bundled_companions(grandchild)) == {"ko"} and bundled_companions(overfit_dir) == {}
    korean_child = lineage_child(BUNDLED_MODELS["ko"], overfit_dir, tmp_path / "korean_child")
    assert bundled_companions(korean_child) == {"en": BUNDLED_MODELS["en"]}


def test_retraining_leaves_the_other_languages_pairs_to_its_model(overfit_dir, tmp_path):
    from collections import Counter

    from chatbot.languages import BUNDLED_MODELS, bundled_language
    from training.retrain import OTHER_LANGUAGE, LoggedPair, pairs_it_answers

    pairs = [
        LoggedPair("where do you live?", "I live in Busan.", "correction", 1),
        LoggedPair("어디 살아?", "부산에 살아.", "correction", 2, ("what's your name?", "My name is Juniper.", "안녕")),
        LoggedPair("I love kimchi stew.", "어디 살아?", "human turn", 3),  # a switch of language: neither's
        LoggedPair("이름이 뭐야?", "My name is Juniper.", "correction", 5),  # taught to a Korean message: Korean's
    ]
    bad = [LoggedPair("좋아하는 음식이 뭐야?", "사람마다 달라요.", "rated bad", 4)]
    child = lineage_child(BUNDLED_MODELS["en"], overfit_dir, tmp_path / "child")
    dropped = Counter()
    assert pairs_it_answers(bundled_language(child), pairs, bad, dropped) == (pairs[:1], [])
    assert dropped[OTHER_LANGUAGE] == 3
    read = LoggedPair("어디 살아?", "부산에 살아.", "correction", 2, ("안녕",))  # the turns the chat lets it read
    assert pairs_it_answers(bundled_language(BUNDLED_MODELS["ko"]), pairs, bad, Counter()) == ([read, pairs[3]], bad)
    other = bundled_language(overfit_dir)  # None: any other model answers all
    assert pairs_it_answers(other, pairs, bad, Counter()) == (pairs, bad)


def test_each_language_s_model_reads_only_the_turns_in_its_language(tmp_path):
    from chatbot.languages import BUNDLED_MODELS
    from chatbot.session import open_session

    session = open_session(BUNDLED_MODELS["en"], tmp_path / "chat.db", False, "cpu", "greedy", None)
    try:
        session.new_conversation()
        said = ["my name is Sam.", "어디 살아?", "what is my name?", "배고파"]
        exchanges = [session.respond(text, user_id=session.log_user(text)) for text in said]
        assert exchanges[1].context == [] and language_of(exchanges[1].reply.text) == "ko"
        assert exchanges[2].context == [said[0], exchanges[0].reply.text]
        assert exchanges[3].context == [said[1], exchanges[1].reply.text]
    finally:
        session.storage.close()


def test_reply_reads_a_conversations_turns_in_the_message_s_language_only(tmp_path):
    import json

    lines = [["my name is Sam.", "Nice to meet you.", "어디 살아?"], ["안녕", "안녕하세요", "what is my name?"]]
    flags = ["--conversations", "--json", "--threads", "1", "--strategy", "greedy"]
    done = subprocess.run(
        [sys.executable, "-m", "chatbot", "reply", *flags],
        input="".join(json.dumps(turns, ensure_ascii=False) + "\n" for turns in lines),
        capture_output=True,
        text=True,
        env={**os.environ, "CHATBOT_DB": str(tmp_path / "unused.db")},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["context"] for r in records] == [[], []]
    assert [language_of(r["reply"]) for r in records] == ["ko", "en"]


def test_the_korean_model_asked_for_answers_korean_and_leaves_english_to_the_english_one(tmp_path):
    """`--model chatbot/default_model_ko` (or a model retrained from it): Korean messages are its,
    English ones the bundled English model's."""
    from chatbot.languages import BUNDLED_MODELS

    done = subprocess.run(
        [sys.executable, "-m", "chatbot", "reply", "--model", str(BUNDLED_MODELS["ko"]), "--threads", "1"],
        input="how was your weekend?\n주말에 뭐 했어?\n",
        capture_output=True,
        text=True,
        env={**os.environ, "CHATBOT_DB": str(tmp_path / "unused.db")},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert [language_of(r) for r in done.stdout.splitlines()] == ["en", "ko"], done.stdout


def test_the_korean_model_replays_its_own_corpus_where_it_is_at_hand(overfit_dir, tmp_path, monkeypatch, capsys):
    import json

    import chatbot.languages
    from training.retrain import default_replay

    assert default_replay(None) == default_replay("en") == "chitchat"
    korean = lineage_child(tmp_path / "none", overfit_dir, tmp_path / "korean")
    monkeypatch.setitem(chatbot.languages.BUNDLED_MODELS, "ko", korean)
    corpus = write_tsv(tmp_path / "pairs.tsv", load_pairs("listening-ko")[:5])
    for own, replayed in ((f"{corpus}+listening-ko", f"{corpus}+listening-ko"), ("/gone.csv", "listening-ko")):
        config = json.loads((korean / "config.json").read_text())
        config["train"] = {**config.get("train", {}), "corpus": own}
        (korean / "config.json").write_text(json.dumps(config))
        assert default_replay("ko") == replayed
    assert "/gone.csv" in capsys.readouterr().out  # it says why it replays less
