"""Retraining on a real log: dozens of exchanges with corrections and ratings, a tiny model, seconds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from chatbot.decoding import GreedySettings, reply
from chatbot.modeldir import load_model
from chatbot.storage import Storage
from training.retrain import clean, logged_pairs, open_log

CORRECTIONS = {
    "what is your favorite animal?": "the otter, because it holds hands while sleeping.",
    "where do you live?": "inside a very small computer.",
    "what is two plus two?": "four, unless you ask a poet.",
    "who made you?": "someone who likes lstms.",
}


def digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture()
def chat_log(tmp_path, overfit_model, sample_pairs):
    """A log written through the storage API, as the chat client writes it: the bot's own
    (already right) replies to 30 sample messages rated good, two rated bad, and four corrections."""
    model, tokenizer = overfit_model
    store = Storage(tmp_path / "chat.db")
    conversation = store.new_conversation("log")
    for i, pair in enumerate(sample_pairs[:30]):
        u = store.add_message(conversation, "user", pair.source)
        r = reply(model, tokenizer, [pair.source], GreedySettings())[0][0]
        b = store.add_message(conversation, "bot", r.text, decoding=r.settings, reply_to=u)
        store.rate(b, -1 if i in (3, 7) else 1)
    for message, correction in CORRECTIONS.items():
        u = store.add_message(conversation, "user", message)
        r = reply(model, tokenizer, [message], GreedySettings())[0][0]
        b = store.add_message(conversation, "bot", r.text, decoding=r.settings, reply_to=u)
        store.correct(b, correction)
    store.close()
    return tmp_path / "chat.db"


MESSAGES = 2 * (30 + len(CORRECTIONS))
THREADS = os.environ.get("CHATBOT_TEST_THREADS", "2")


def chatbot(*args):
    return subprocess.run([sys.executable, "-m", "chatbot", *args], capture_output=True, text=True)


def test_pairs_from_the_log_by_kind(chat_log):
    pairs, dropped = clean(logged_pairs(open_log(chat_log)))
    kinds = {p.kind for p in pairs}
    assert kinds == {"correction", "rated good", "human turn"}
    assert {(p.source, p.reply) for p in pairs if p.kind == "correction"} == set(CORRECTIONS.items())
    assert len([p for p in pairs if p.kind == "rated good"]) == 28
    without = clean(logged_pairs(open_log(chat_log), human_turns=False))[0]
    assert "human turn" not in {p.kind for p in without}


def test_bad_replies_never_become_targets(tmp_path, sample_pairs):
    store = Storage(tmp_path / "chat.db")
    c = store.new_conversation()
    u = store.add_message(c, "user", "hi")
    b = store.add_message(c, "bot", "a bad reply", reply_to=u)
    store.rate(b, -1)
    store.close()
    assert [p for p in logged_pairs(open_log(tmp_path / "chat.db")) if p.reply == "a bad reply"] == []


def test_retrain_learns_the_corrections_and_leaves_the_parent_alone(chat_log, overfit_dir, tmp_path, sample_pairs):
    from conftest import write_tsv

    replay = write_tsv(tmp_path / "replay.tsv", sample_pairs[:30])
    parent = shutil.copytree(overfit_dir, tmp_path / "parent")
    config = json.loads((parent / "config.json").read_text())
    config["taught"] = gates = {"near": 0.6, "same": 0.75}  # the parent's own taught gates
    (parent / "config.json").write_text(json.dumps(config))
    before = digest(parent)
    out = tmp_path / "retrained"
    result = chatbot(
        "retrain",
        "--db",
        str(chat_log),
        "--model",
        str(parent),
        "--out",
        str(out),
        "--replay",
        str(replay),
        "--replay-ratio",
        "1",
        "--epochs",
        "250",
        "--lr",
        "0.005",
        "--eval-every",
        "50",
        "--patience",
        "100",
        "--dropout",
        "0.02",
        "--unlikelihood",
        "1",
        "--every-correction",  # what the tiny model would not have begun so, trained too
        "--device",
        "cpu",
        "--threads",
        THREADS,
        "--no-benchmark",
        "--quiet",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "taught replies recalled (32)" in result.stdout and "replies rated bad still given (2)" in result.stdout
    model, tokenizer, config = load_model(out)
    logged = {p.source: p for p in logged_pairs(open_log(chat_log)) if p.kind == "correction"}
    assert all(len(logged[m].context) >= 2 for m in CORRECTIONS)  # each correction learned with the turns before it
    contexts = [logged[m].context for m in CORRECTIONS]
    replies = reply(model, tokenizer, list(CORRECTIONS), GreedySettings(), contexts=contexts)
    assert [r[0].text for r in replies] == list(CORRECTIONS.values())  # every correction, none held out
    results = json.loads((out / "retrain.json").read_text())["results"]
    assert results["taught_recall_after"] == 1.0 > results["taught_recall_before"]
    assert results["bad_said_before"] == 1.0 and results["bad_said_after"] == 0.0  # unlikelihood took
    learned = {(e["id"], e["reply"]) for e in config["lineage"]["learned"]}
    assert {(logged[m].message_id, c) for m, c in CORRECTIONS.items()} <= learned
    assert config["model"]["dropout"] == 0.02  # the parent's was 0.0
    assert config["taught"] == gates  # a fine-tune keeps the states its parent's gates were chosen for
    lineage = config["lineage"]
    assert lineage["parent"] == str(parent.resolve()) and lineage["message_ids"]
    assert digest(parent) == before
    assert [r["path"] for r in Storage(chat_log).models()] == [str(out.resolve())]
    assert Storage(chat_log).db.execute("select count(*) from messages").fetchone()[0] == MESSAGES


def test_export_writes_pairs_and_trains_nothing(chat_log, tmp_path):
    result = chatbot("retrain", "--db", str(chat_log), "--model", "unused", "--export", str(tmp_path / "pairs.tsv"))
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "pairs.tsv").read_text().splitlines()
    assert all(line.count("\t") >= 1 for line in lines) and len(lines) > len(CORRECTIONS)
    assert stat.S_IMODE(os.stat(tmp_path / "pairs.tsv").st_mode) == 0o600  # the log's conversations: owner-only


@pytest.mark.parametrize("setup", ["missing", "empty", "no_tables", "messages_rebuilt_without_id"])
def test_bad_logs_are_one_line_errors_and_write_nothing(setup, tmp_path, overfit_dir):
    db = tmp_path / "chat.db"
    if setup == "empty":
        Storage(db).close()
    elif setup == "no_tables":
        import sqlite3

        sqlite3.connect(db).execute("create table other (x)").connection.commit()
    elif setup == "messages_rebuilt_without_id":
        import sqlite3

        Storage(db).close()
        conn = sqlite3.connect(db)
        conn.executescript(
            "drop table messages_fts; drop table messages; create table messages (conversation_id, role, text)"
        )
        conn.close()
    out = tmp_path / "new"
    result = chatbot("retrain", "--db", str(db), "--model", str(overfit_dir), "--out", str(out), "--no-benchmark")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_incompatible_model_is_refused(chat_log, tmp_path):
    result = chatbot(
        "retrain", "--db", str(chat_log), "--model", str(tmp_path), "--out", str(tmp_path / "new"), "--no-benchmark"
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "new").exists()


def test_kill_9_during_retraining_leaves_parent_and_log_intact(chat_log, overfit_dir, tmp_path):
    before, db_rows = digest(overfit_dir), None
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chatbot",
            "retrain",
            "--db",
            str(chat_log),
            "--model",
            str(overfit_dir),
            "--out",
            str(out),
            "--replay",
            "sample",
            "--epochs",
            "500",
            "--eval-every",
            "5",
            "--device",
            "cpu",
            "--threads",
            THREADS,
            "--no-benchmark",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "train_state.pt").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert digest(overfit_dir) == before
    import sqlite3

    conn = sqlite3.connect(chat_log)
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert conn.execute("select count(*) from messages").fetchone()[0] == MESSAGES
    del db_rows


def test_a_correction_the_model_would_not_have_begun_keeps_its_nearest_corpus_pairs_beside_it(
    overfit_model, sample_pairs
):
    """`neighbours`: for a correction whose first piece the model would not have given, the
    replayed pairs its message reads most like (the message itself first, where the corpus holds
    it); for one the model would have begun so (its own reply), none: those neighbours would be its
    rewordings."""
    from corpora import Pair
    from training.retrain import neighbours

    model, tokenizer = overfit_model
    message = sample_pairs[0].source
    own = reply(model, tokenizer, [message], GreedySettings())[0][0].text
    unexpected = Pair(message, "the otter holds hands while it sleeps.")
    kept = neighbours(model, tokenizer, [unexpected], sample_pairs, 3, seed=1)
    assert len(kept) == 3 and message in [p.source for p in kept]
    assert neighbours(model, tokenizer, [Pair(message, own)], sample_pairs, 3, seed=1) == []
    assert neighbours(model, tokenizer, [unexpected], sample_pairs, 0, seed=1) == []
    assert not model.training


def test_by_default_a_correction_the_model_would_not_have_begun_stays_in_the_memory(
    chat_log, overfit_model, overfit_dir, tmp_path
):
    """Learned alone, such a correction is said to every message the model reads alike
    (docs/teaching.md): the defaults leave it to the taught memory, which keeps it to its message,
    and train the rest; the new model's lineage does not list it as learned, so the memory keeps it."""
    from corpora import Pair
    from training.retrain import unexpected

    model, tokenizer = overfit_model
    logged = {p.source: p for p in logged_pairs(open_log(chat_log)) if p.kind == "correction"}
    odd = unexpected(model, tokenizer, [Pair(m, c, logged[m].context) for m, c in CORRECTIONS.items()])
    message = "what is your favorite animal?"
    own = reply(model, tokenizer, [message], GreedySettings(), contexts=[logged[message].context])[0][0].text
    assert unexpected(model, tokenizer, [Pair(message, own, logged[message].context)]) == [False]
    assert not model.training
    out = tmp_path / "retrained"
    result = chatbot(
        "retrain", "--db", str(chat_log), "--model", str(overfit_dir), "--out", str(out), "--replay", "",
        "--epochs", "3", "--device", "cpu", "--threads", THREADS, "--no-benchmark", "--quiet", "--force",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    left = sum(odd)
    said = f"left to the taught memory: {left} of {len(CORRECTIONS)} corrections"
    assert (said in result.stdout) == (left > 0), result.stdout
    assert (f"{left} of them left to the taught memory" in result.stdout) == (left > 0)
    assert json.loads((out / "retrain.json").read_text())["results"]["left_to_memory"] == left
    lineage = json.loads((out / "config.json").read_text())["lineage"]
    learned = {e["id"] for e in lineage["learned"]}
    left_ids = {logged[m].message_id for m, o in zip(CORRECTIONS, odd) if o}
    assert not learned & left_ids
    assert {e["id"] for e in lineage["kept_to_message"]} == left_ids  # the memory keeps them to their messages


def test_a_log_whose_only_correction_is_left_to_the_memory_is_one_line(
    overfit_dir, overfit_model, tmp_path, sample_pairs
):
    """Nothing left to train is said in one line, and no model is written."""
    from corpora import Pair
    from training.retrain import unexpected

    model, tokenizer = overfit_model
    message, correction = sample_pairs[0].source, "the otter holds hands while it sleeps."
    assert unexpected(model, tokenizer, [Pair(message, correction)]) == [True]
    store = Storage(tmp_path / "one.db")
    conversation = store.new_conversation("one")
    u = store.add_message(conversation, "user", message)
    store.correct(store.add_message(conversation, "bot", "hello", reply_to=u), correction)
    store.close()
    out = tmp_path / "out"
    result = chatbot("retrain", "--db", str(tmp_path / "one.db"), "--model", str(overfit_dir), "--out", str(out))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "nothing to train" in result.stderr and "--every-correction" in result.stderr
    assert not (out / "config.json").exists()


def test_a_taught_reply_said_to_other_messages_becomes_their_negative(overfit_model, sample_pairs):
    """`Spread`: where the model now says a taught reply to a message of the pool whose reply
    changed, that message with the reply is found (new the first time only); not where the
    message shares a content word with the taught one (it may be its rewording), nor where the
    model's reply did not change."""
    import torch

    from chatbot.model import Seq2Seq
    from corpora import Pair
    from training.retrain import Spread

    model, tokenizer = overfit_model
    torch.manual_seed(0)
    before = Seq2Seq(model.cfg).eval()  # the same vocabulary, nothing learned: it says other things
    pool = sample_pairs[:30]
    target = pool[0]
    own = reply(model, tokenizer, [target.source], GreedySettings())[0][0].text
    assert own == target.reply
    elsewhere = Pair("zebra xylophone quartz", target.reply)  # taught for a message sharing no word with it
    reworded = Pair(target.source, target.reply)
    spread = Spread(before, tokenizer, [elsewhere, reworded], pool, frozenset())
    found, new = spread.negatives(model)
    assert Pair(target.source, target.reply, target.context) in found and new == found
    assert all(p.reply == target.reply for p in found)
    assert spread.negatives(model) == (found, [])  # still said there; nothing new
    unchanged = Spread(model, tokenizer, [elsewhere], pool, frozenset())
    assert unchanged.negatives(model) == ([], [])
    assert Spread(before, tokenizer, [reworded], pool, frozenset()).negatives(model) == ([], [])


def test_a_reply_the_model_knows_by_heart_is_held_firmly_and_a_new_one_is_not(overfit_model, sample_pairs):
    """`held_firmly`: every piece of the reply given more than half the probability after its
    message (teacher forcing): the tiny model's own replies are; the otter line, never taught, is
    not; nor is its own reply under a floor no probability reaches."""
    from corpora import Pair
    from training.recall import held_firmly

    model, tokenizer = overfit_model
    own = [Pair(p.source, reply(model, tokenizer, [p.source], GreedySettings())[0][0].text) for p in sample_pairs[:5]]
    assert held_firmly(model, tokenizer, own) == [True] * 5
    assert held_firmly(model, tokenizer, [Pair(own[0].source, "the otter holds hands while it sleeps.")]) == [False]
    assert held_firmly(model, tokenizer, own[:1], floor=1.0) == [False]


def retrain_on(tmp_path, overfit_dir, overfit_model, corrections: list[tuple[str, str]], epochs: int):
    """`chatbot retrain` of the tiny model on a log of these corrections: (its output, the run's report)."""
    model, tokenizer = overfit_model
    store = Storage(tmp_path / "chat.db")
    conversation = store.new_conversation("log")
    for message, correction in corrections:
        u = store.add_message(conversation, "user", message)
        r = reply(model, tokenizer, [message], GreedySettings())[0][0]
        store.correct(store.add_message(conversation, "bot", r.text, reply_to=u), correction)
    store.close()
    replay = shutil.copy(overfit_dir.parent / "thirty.tsv", tmp_path / "replay.tsv")
    out = tmp_path / "retrained"
    result = chatbot(
        "retrain", "--db", str(tmp_path / "chat.db"), "--model", str(overfit_dir), "--out", str(out),
        "--replay", str(replay), "--replay-ratio", "1", "--epochs", str(epochs), "--lr", "0.005",
        "--every-correction", "--spread-pool", "0", "--device", "cpu", "--threads", THREADS, "--no-benchmark",
        "--force",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr, out


LETTERS = "".join(__import__("random").Random(3).choice("qxzjvkwy") for _ in range(40))  # no model learns it soon


def test_retrain_ends_when_checks_learn_no_more_and_leaves_the_rest_to_the_memory(tmp_path, overfit_dir, overfit_model):
    """A correction the tiny model cannot learn in its budget (forty random letters) beside one it
    can: retrain stops once `RECALL_PATIENCE` checks have found the one learned and no more, before
    its last epoch, and the lineage lists only that one as learned."""
    from training.retrain import RECALL_PATIENCE

    pairs = [("who made you?", "someone who likes lstms."), ("say something odd", LETTERS)]
    output, out = retrain_on(tmp_path, overfit_dir, overfit_model, pairs, epochs=300)
    assert "checks learned no more taught replies (1 of 2)" in output, output
    report = json.loads((out / "retrain.json").read_text())["results"]
    assert RECALL_PATIENCE <= report["epochs"] < 300  # the checks run further apart on a slower machine
    learned = json.loads((out / "config.json").read_text())["lineage"]["learned"]
    assert [entry["reply"] for entry in learned] == ["someone who likes lstms."]


def test_retrain_that_has_learned_nothing_yet_is_not_ended_for_learning_no_more(tmp_path, overfit_dir, overfit_model):
    """Checks that find none learned are a run not yet begun to learn, not a plateau (the Korean
    model learns nothing for its first 15 epochs): it runs to its budget."""
    output, out = retrain_on(tmp_path, overfit_dir, overfit_model, [("say something odd", LETTERS)], epochs=25)
    assert "checks learned no more" not in output, output
    assert json.loads((out / "retrain.json").read_text())["results"]["epochs"] == 25


def test_a_retrained_model_still_saying_a_taught_reply_elsewhere_is_not_registered(
    overfit_dir, overfit_model, sample_pairs, tmp_path
):
    """`RecallStop` counts a run clean only after a check that found every taught reply recalled
    and none said where it was not taught for (and late in its budget checks for that before
    every reply is recalled); a run that ended otherwise (its budget, its rounds)
    is checked once more, and a model found saying a taught reply elsewhere is not registered
    unless `--force`: the parent with the taught memory gives every correction to its own message."""
    import argparse

    import torch

    from chatbot.model import Seq2Seq
    from corpora import Pair
    from training.recall import content_words, word_pairs
    from training.retrain import RecallStop, Spread, finish

    model, tokenizer = overfit_model
    pool = sample_pairs[:30]
    none = frozenset()
    # a pair the model knows by heart whose reply shares a word pair with another pair's reply, asked otherwise
    taught = next(
        t
        for t in pool
        if any(
            o is not t and word_pairs(o.reply, none) & word_pairs(t.reply, none)
            and not content_words(o.source, none) & content_words(t.source, none)
            for o in pool
        )
    )  # fmt: skip
    torch.manual_seed(0)
    before = Seq2Seq(model.cfg).eval()  # nothing learned: every reply of the pool changed since
    negatives = []
    stop = RecallStop(tokenizer, [taught], none, Spread(before, tokenizer, [taught], pool, none))
    stop.add_negatives = negatives.extend
    assert stop(model) is None and not stop.clean and negatives  # recalled, but said elsewhere too
    calm = RecallStop(tokenizer, [taught], none, Spread(model, tokenizer, [taught], pool, none))
    assert calm(model) and calm.clean  # recalled, and no reply changed
    unknown = Pair(taught.source, "the otter holds hands while it sleeps.")  # not recalled: no check, until late
    for progress, checked in ((0.1, False), (0.9, True)):
        negatives.clear()
        early = RecallStop(tokenizer, [taught, unknown], none, Spread(before, tokenizer, [taught], pool, none))
        early.add_negatives, early.progress = negatives.extend, lambda at=progress: at
        assert early(model) is None and not early.clean and bool(negatives) == checked

    out = tmp_path / "retrained"
    shutil.copytree(overfit_dir, out)
    db = tmp_path / "chat.db"
    Storage(db).close()
    results = {"taught": 1, "rated_bad": 0, "taught_recall_before": 0.0, "taught_recall_after": 1.0}
    results |= {"bad_said_before": None, "bad_said_after": None, "spread_left": len(negatives)}
    for force, code in ((False, 1), (True, 0)):
        assert finish(argparse.Namespace(db=db, force=force), out, {"parent": str(overfit_dir)}, results) == code
        store = Storage(db)
        registered = [m["path"] for m in store.models()]
        store.close()
        assert registered == ([str(out.resolve())] if force else [])
