"""Teaching by correction: a corrected reply is what the model says the next time, in the chat, in
`chatbot reply --db`, after a restart, and not with --no-taught; messages it was not taught
about are answered as before."""

from __future__ import annotations

import itertools
import subprocess
import sys

import torch

from chatbot.decoding import reply, settings_from
from chatbot.decoding.replies import prepare
from chatbot.decoding.rules import Context
from chatbot.storage import Storage
from chatbot.taught import UNEXPECTED, Memory, Taught, TaughtReply, read_states
from corpora import Pair

OTTER = "the otter holds hands while it sleeps."


def test_the_taught_rule_mixes_in_the_nearest_keys_pieces_by_their_similarity():
    """On a hand-made memory: a query on a key gets its piece at weight MOST; a query far from
    every key leaves the distribution as it was."""
    memory = Memory(attentional_size=2)
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    memory.table = memory.table._replace(
        replies=(TaughtReply(7, "m", "r", []),), keys=keys, values=torch.tensor([5, 3]),
        owner=torch.tensor([0, 0]), starts=torch.tensor([0]), firsts=keys[:1], ends=torch.tensor([2]),
        ids=torch.tensor([7]), unexpected=torch.tensor([False]),
    )  # fmt: skip
    logp = torch.log_softmax(torch.zeros(1, 8), -1)
    rule = Taught(memory)
    near = rule(logp.clone(), Context(0, torch.zeros(1, 1), None, [], [], query=torch.tensor([[1.0, 0.0]])))
    assert abs(near[0, 5].exp().item() - (memory.most + (1 - memory.most) / 8)) < 1e-5
    far = Taught(memory)(logp.clone(), Context(0, torch.zeros(1, 1), None, [], [], query=torch.tensor([[-1.0, 0.2]])))
    assert torch.equal(far, logp)


def test_a_reply_the_model_would_not_have_begun_is_followed_only_by_its_own_message():
    """The same hand-made memory, its reading marked unexpected (the model gave its first piece
    less than UNEXPECTED): another message is not followed even where its first state is the
    taught one's (0.99), while the message it was taught for is, wherever its turns before took
    its state (0.5). Marked expected, the reading is followed by the 0.99 message, as usual."""
    memory = Memory(attentional_size=2)
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    table = memory.table._replace(
        replies=(TaughtReply(7, "m", "r", []),), keys=keys, values=torch.tensor([5, 3]),
        owner=torch.tensor([0, 0]), starts=torch.tensor([0]), firsts=keys[:1], ends=torch.tensor([2]),
        ids=torch.tensor([7]), said=((4, 6),),
    )  # fmt: skip
    logp = torch.log_softmax(torch.zeros(1, 8), -1)

    def first_piece(unexpected: bool, cosine: float, message: list[int]) -> int:
        memory.table = table._replace(unexpected=torch.tensor([unexpected]))
        query = torch.tensor([[cosine, -((1 - cosine**2) ** 0.5)]])  # away from the second key
        ctx = Context(0, torch.tensor([message]), None, [], message, query=query)
        return int(Taught(memory)(logp.clone(), ctx)[0].argmax())

    assert memory.start < 0.99 < memory.alone
    assert first_piece(False, 0.99, [4, 7]) == 5
    assert first_piece(True, 0.99, [4, 7]) == 0  # 0: the flat distribution's first piece, the model's own
    assert first_piece(True, 0.5, [4, 6]) == 5
    assert first_piece(True, 0.5, [4, 6, 0, 0]) == 5  # padding is not the message


def test_whether_the_model_expected_a_taught_reply_is_read_from_the_model(overfit_model, sample_pairs):
    """A taught reply the model already gives is expected; the otter line, whose first piece the
    model does not give that message, is not."""
    model, tokenizer = overfit_model
    message = sample_pairs[0].source
    own = reply(model, tokenizer, [message], settings_from("greedy"))[0][0].text
    memory = Memory(model.cfg.attentional_size)
    memory.add(model, tokenizer, [TaughtReply(1, message, own, []), TaughtReply(2, message, OTTER, [])])
    assert memory.table.unexpected.tolist() == [False, True]


def test_a_correction_typed_in_lower_case_is_judged_as_it_would_begin_capitalised():
    """A person who types "my name is juniper." means what the bundled model would begin as "My
    name ...": its lower-case first piece, rare at a reply's start, does not make it a reply the
    model would not have begun so (followed for its own message alone, and left untrained)."""
    from chatbot.modeldir import load_model
    from chatbot.paths import BUNDLED_MODEL
    from training.retrain import unexpected

    model, tokenizer, _ = load_model(BUNDLED_MODEL)
    message, typed = "what is your name?", "my name is juniper."
    source = prepare(tokenizer, model, message, [])[0]
    _, (as_typed,) = read_states(model, [source], [tokenizer.encode(typed)[:1]])
    assert as_typed < UNEXPECTED  # as typed, its first piece is one the model would not begin with
    memory = Memory(model.cfg.attentional_size)
    memory.add(model, tokenizer, [TaughtReply(1, message, typed, []), TaughtReply(2, message, OTTER, [])])
    assert memory.table.unexpected.tolist() == [False, True]
    assert unexpected(model, tokenizer, [Pair(message, typed), Pair(message, OTTER)]) == [False, True]


def test_a_correction_retraining_kept_to_its_message_stays_so_in_the_retrained_models_memory(
    overfit_model, sample_pairs
):
    """What `chatbot retrain` left to the memory (`kept_to_message` in the new model's lineage) is
    followed for its own message alone, even where the model reading it would now begin it so."""
    from chatbot.taught import memory_from_log

    model, tokenizer = overfit_model
    message = sample_pairs[0].source
    own = reply(model, tokenizer, [message], settings_from("greedy"))[0][0].text
    rows = [{"id": 1, "message": message, "reply": own, "context": []}]
    assert memory_from_log(model, tokenizer, rows).table.unexpected.tolist() == [False]
    config = {"lineage": {"kept_to_message": [{"id": 1, "reply": own}]}}
    assert memory_from_log(model, tokenizer, rows, config).table.unexpected.tolist() == [True]
    config = {"lineage": {"kept_to_message": [{"id": 1, "reply": "an earlier text"}]}}  # corrected since
    assert memory_from_log(model, tokenizer, rows, config).table.unexpected.tolist() == [False]


def two_replies(memory: Memory, keys: torch.Tensor, values: list[int]) -> None:
    """Give `memory` a table of two taught replies (log ids 1 and 2) of two keys each, in order."""
    memory.table = memory.table._replace(
        replies=(TaughtReply(1, "m", "a", []), TaughtReply(2, "n", "b", [])), keys=keys,
        values=torch.tensor(values), owner=torch.tensor([0, 0, 1, 1]), starts=torch.tensor([0, 2]),
        firsts=keys[[0, 2]], ends=torch.tensor([2, 4]), ids=torch.tensor([1, 2]),
        unexpected=torch.tensor([False, False]),
    )  # fmt: skip


def test_a_taught_reply_followed_is_finished_in_its_own_pieces_not_a_reply_that_starts_alike():
    """Two taught replies start alike (piece 5); the message came nearer the first (1.0 against
    0.8). A later state a little nearer the second's next key still takes the first's piece: the
    message chose its reply ("My name is teal." is not written)."""
    memory = Memory(attentional_size=3)
    keys = torch.nn.functional.normalize(torch.tensor([[1, 0, 0], [0, 1, 0], [0.8, 0.6, 0], [0, 0.8, 0.6]]), dim=-1)
    two_replies(memory, keys, [5, 6, 5, 7])
    logp = torch.log_softmax(torch.zeros(1, 8), -1)
    rule = Taught(memory)
    first = rule(logp.clone(), Context(0, torch.zeros(1, 1), None, [], [], query=torch.tensor([[1.0, 0.0, 0.0]])))
    assert first[0].argmax() == 5
    later = torch.nn.functional.normalize(torch.tensor([[0.0, 0.9, 0.4359]]), dim=-1)
    assert (later @ keys[3]) > (later @ keys[1])  # the second reply's key is the nearer one
    second = rule(logp.clone(), Context(1, torch.zeros(1, 1), None, [5], [], query=later))
    assert second[0].argmax() == 6 and second[0, 6] > second[0, 7] + 2
    # a reply that began with a piece neither taught reply begins with follows neither of them
    otherwise = rule(logp.clone(), Context(1, torch.zeros(1, 1), None, [4], [], query=later))
    assert torch.equal(otherwise, logp)


def test_a_taught_reply_answers_its_message_and_nothing_else_changes(overfit_model, sample_pairs):
    model, tokenizer = overfit_model
    message = sample_pairs[0].source
    memory = Memory(model.cfg.attentional_size)
    memory.add(model, tokenizer, [TaughtReply(1, message, OTTER, [])])
    greedy = settings_from("greedy")
    assert reply(model, tokenizer, [message], greedy)[0][0].text != OTTER
    (taught,) = reply(model, tokenizer, [message], greedy, taught=memory)[0]
    assert taught.text == OTTER and all(p is not None and p[1] == 1 for p in taught.taught)
    for strategy in ("beam", "sample"):
        assert "otter" in reply(model, tokenizer, [message], settings_from(strategy, seed=1), taught=memory)[0][0].text
    others = [p.source for p in sample_pairs[1:30]]
    changed = [
        (a[0].text, b[0].text)
        for a, b in zip(reply(model, tokenizer, others, greedy, taught=memory), reply(model, tokenizer, others, greedy))
        if a[0].text != b[0].text
    ]
    # a tiny overfit model's states are close together: a message whose states pass near the
    # taught reply's at a similarity right on the gate may pick up a piece, as the float rounding
    # of the moment falls; one in ten would be a leak (bench/teaching.py measures it on the real model)
    assert len(changed) <= 2, changed


def teach(db, message: str, correction: str, model, tokenizer) -> None:
    """A reply corrected as ctrl+r records it."""
    store = Storage(db)
    conversation = store.new_conversation("taught")
    u = store.add_message(conversation, "user", message)
    r = reply(model, tokenizer, [message], settings_from("greedy"))[0][0]
    b = store.add_message(conversation, "bot", r.text, decoding=r.settings, reply_to=u)
    store.correct(b, correction)
    store.close()


def test_the_chat_follows_a_correction_in_a_new_conversation_and_after_a_restart(
    overfit_dir, overfit_model, tmp_path, sample_pairs
):
    from chatbot.session import open_session

    model, tokenizer = overfit_model
    message = sample_pairs[2].source
    teach(tmp_path / "chat.db", message, OTTER, model, tokenizer)
    for taught in (True, False):
        session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None)
        session.taught = taught
        session.new_conversation()
        exchange = session.respond(message, user_id=session.log_user(message))
        assert (exchange.reply.text == OTTER) == taught
        logged = session.storage.message(exchange.bot_id)
        assert ('"taught": true' in logged["decoding"]) == taught
        session.storage.close()


async def test_ctrl_r_then_the_same_message_gets_the_correction(overfit_dir, tmp_path, sample_pairs):
    from chatbot.app.chat_app import ChatApp
    from chatbot.app.screens import TextPrompt
    from chatbot.app.widgets import MessageView
    from chatbot.session import open_session

    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None)
    app = ChatApp(session, errors=tmp_path / "errors.log")
    message = sample_pairs[5].source
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#prompt").value = message
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        prompt = app.screen.query_one("Input")
        prompt.value = OTTER
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("ctrl+n")  # a new conversation
        app.query_one("#prompt").value = message
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        bot = [v for v in app.query(MessageView) if v.role == "bot"][-1]
        assert bot.text == OTTER and bot.inside["taught"][0] is not None
        assert not app.unexpected
    session.storage.close()


def test_reply_with_a_log_follows_what_it_taught(overfit_dir, overfit_model, tmp_path, sample_pairs):
    model, tokenizer = overfit_model
    message = sample_pairs[3].source
    teach(tmp_path / "chat.db", message, OTTER, model, tokenizer)

    def run(*flags):
        args = [sys.executable, "-m", "chatbot", "reply", message, "--model", str(overfit_dir), "--strategy", "greedy"]
        return subprocess.run([*args, *flags], capture_output=True, text=True)

    assert run("--db", str(tmp_path / "chat.db")).stdout.strip() == OTTER
    assert run("--db", str(tmp_path / "chat.db"), "--no-taught").stdout.strip() != OTTER
    missing = run("--db", str(tmp_path / "nowhere.db"))
    assert missing.returncode == 1 and "no such chat log" in missing.stderr and "Traceback" not in missing.stderr


def test_what_a_retrained_model_learned_stays_in_its_memory(overfit_dir, overfit_model, tmp_path, sample_pairs):
    """A model whose lineage says it learned a taught reply (as `chatbot retrain` writes it) keeps
    its memory entry: this copy never learned the otter line, and the memory still gives it; a
    later correction of the same reply is followed instead."""
    import json
    import shutil

    model, tokenizer = overfit_model
    message, db = sample_pairs[3].source, tmp_path / "chat.db"
    teach(db, message, OTTER, model, tokenizer)
    retrained = shutil.copytree(overfit_dir, tmp_path / "retrained")
    config = json.loads((retrained / "config.json").read_text())
    (entry,) = Storage(db).taught()
    config["lineage"] = {"learned": [{"id": entry["id"], "reply": OTTER}]}
    (retrained / "config.json").write_text(json.dumps(config))

    def run(*flags):
        args = ["reply", message, "--model", str(retrained), "--strategy", "greedy", "--db", str(db), *flags]
        return subprocess.run([sys.executable, "-m", "chatbot", *args], capture_output=True, text=True).stdout.strip()

    assert run() == OTTER and run("--no-taught") != OTTER  # the memory, not the model, says it here
    store = Storage(db)
    store.correct(entry["id"], "penguins slide on their bellies.")
    store.close()
    assert run() == "penguins slide on their bellies."


def test_a_models_own_gates_in_its_config_decide_which_messages_follow_a_taught_reply(
    overfit_dir, overfit_model, tmp_path, sample_pairs
):
    """The gates `bench/taught_gates.py --write` stores in config.json are the ones `chatbot reply
    --db` and the chat use: gates open to every state make an unrelated message follow the taught
    reply, which the constants keep it from."""
    import json
    import shutil

    from chatbot.session import open_session

    model, tokenizer = overfit_model
    taught_message, other, db = sample_pairs[3].source, sample_pairs[8].source, tmp_path / "chat.db"
    teach(db, taught_message, OTTER, model, tokenizer)
    opened = shutil.copytree(overfit_dir, tmp_path / "opened")
    config = json.loads((opened / "config.json").read_text())
    config["taught"] = {"start": -1.0, "near": -1.0, "same": -0.99, "alone": -1.0, "chosen_by": "a test"}
    (opened / "config.json").write_text(json.dumps(config))

    def run(directory):
        args = ["reply", other, "--model", str(directory), "--strategy", "greedy", "--db", str(db)]
        return subprocess.run([sys.executable, "-m", "chatbot", *args], capture_output=True, text=True).stdout.strip()

    begun = OTTER[:7]  # followed from a message far from its own, the taught reply is begun, not always kept
    assert not run(overfit_dir).startswith(begun)
    assert run(opened).startswith(begun)
    session = open_session(str(opened), db, False, "cpu", "greedy", None)
    session.new_conversation()
    assert session.respond(other, user_id=session.log_user(other)).reply.text.startswith(begun)
    session.storage.close()


def test_a_reply_rated_bad_is_not_given_again_and_other_messages_are_answered_as_before(
    overfit_model, sample_pairs, tmp_path
):
    """Rated bad (and not corrected), a reply is pushed away from: the same message gets another
    reply at once, each strategy; the first piece shows the shunned reply's id with a negative
    weight; other messages are answered as before. A bad rating that was corrected teaches the
    correction instead, and one taken back leaves the memory."""
    model, tokenizer = overfit_model
    message = sample_pairs[3].source
    greedy = settings_from("greedy")
    bad = reply(model, tokenizer, [message], greedy)[0][0].text
    store = Storage(tmp_path / "chat.db")
    conversation = store.new_conversation("rated")
    b = store.add_message(conversation, "bot", bad, reply_to=store.add_message(conversation, "user", message))
    store.rate(b, -1)
    (row,) = store.taught()
    assert row["shunned"] and row["reply"] == bad
    memory = Memory(model.cfg.attentional_size)
    memory.add(model, tokenizer, [TaughtReply(row["id"], row["message"], row["reply"], [], row["shunned"])])
    (again,) = reply(model, tokenizer, [message], greedy, taught=memory)[0]
    assert again.text != bad and again.taught[0][0] < 0 and again.taught[0][1] == b
    for strategy in ("beam", "sample"):
        assert reply(model, tokenizer, [message], settings_from(strategy, seed=1), taught=memory)[0][0].text != bad
    others = [p.source for p in sample_pairs[4:30]]
    assert [r[0].text for r in reply(model, tokenizer, others, greedy, taught=memory)] == [
        r[0].text for r in reply(model, tokenizer, others, greedy)
    ]
    store.correct(b, OTTER)
    assert [(r["reply"], r["shunned"]) for r in store.taught()] == [(OTTER, False)]
    store2 = Storage(tmp_path / "other.db")
    conversation = store2.new_conversation("rated")
    b2 = store2.add_message(conversation, "bot", bad, reply_to=store2.add_message(conversation, "user", message))
    store2.rate(b2, -1)
    store2.rate(b2, 0)
    assert store2.taught() == []


def test_the_one_row_form_of_the_rule_gives_what_the_rows_form_gives():
    """`Taught.one_row` (a lone row, in Python numbers) against the rows' form on the same row
    twice, step after step on a random table: the same distribution, gain, weight and reply id."""
    torch.manual_seed(0)
    size, vocabulary, lengths = 6, 12, [3, 4, 2, 5, 3]
    keys = torch.nn.functional.normalize(torch.randn(sum(lengths), size), dim=-1)
    starts = torch.tensor([0, 3, 7, 9, 14])
    values = torch.randint(1, vocabulary, (len(keys),))
    values[starts[1]] = values[starts[0]]  # two replies that begin alike
    memory = Memory(attentional_size=size)
    memory.table = memory.table._replace(
        replies=tuple(TaughtReply(i, "m", "r", []) for i in range(len(lengths))), keys=keys, values=values,
        owner=torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths)), starts=starts,
        firsts=keys[starts], ends=torch.cat([starts[1:], torch.tensor([len(keys)])]),
        ids=torch.arange(len(lengths)) + 100, unexpected=torch.zeros(len(lengths), dtype=torch.bool),
    )  # fmt: skip
    followed = 0
    for trial in range(30):
        reading = trial % len(lengths)
        one, rows = Taught(memory), Taught(memory)
        reply_so_far: list[int] = []
        for step in range(3):
            key = min(int(starts[reading]) + step, len(keys) - 1)
            query = keys[key : key + 1] + (0.05 + 0.1 * (trial % 3)) * torch.randn(1, size)
            logp, gain = torch.log_softmax(torch.randn(1, vocabulary), -1), torch.randn(1, vocabulary)
            alone = Context(step, torch.zeros(1, 1), None, list(reply_so_far), [], gain.clone(), query=query)
            history = torch.tensor([reply_so_far, reply_so_far], dtype=torch.long).view(2, step)
            twice = Context(step, torch.zeros(2, 1), history, None, None, gain.repeat(2, 1), query=query.repeat(2, 1))
            a, b = one(logp.clone(), alone), rows(logp.repeat(2, 1), twice)
            assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[0], b[1], atol=1e-5)
            assert torch.allclose(alone.gain[0], twice.gain[0], atol=1e-5)
            if alone.taught is None:
                assert twice.taught is None
            else:
                followed += 1
                assert alone.taught[1] * 2 == twice.taught[1]
                assert abs(alone.taught[0][0] - twice.taught[0][0]) < 1e-5
            reply_so_far.append(int(a[0].argmax()))
    assert followed > 10  # the comparison covered taught pieces mixed in, not only rows left alone


def test_a_large_memory_searches_its_first_keys_in_int8_and_replies_as_an_exact_search_does(
    overfit_model, sample_pairs, monkeypatch
):
    """From `COARSE` readings a message's first search reads an int8 copy of the first keys and
    compares a shortlist exactly: the same replies as the exact search (here from 2 readings)."""
    import pytest

    import chatbot.taught as taught
    from chatbot.engine import int8

    if not int8.available():
        pytest.skip("this torch has no fbgemm")
    model, tokenizer = overfit_model
    taught_replies = [TaughtReply(i, p.source, p.reply, []) for i, p in enumerate(sample_pairs[:40])]
    exact = Memory(model.cfg.attentional_size)
    exact.add(model, tokenizer, taught_replies)
    monkeypatch.setattr(taught, "COARSE", 2)
    monkeypatch.setattr(taught, "SHORTLIST", 4)
    coarse = Memory(model.cfg.attentional_size)
    coarse.add(model, tokenizer, taught_replies)
    assert exact.table.coarse is None and coarse.table.coarse is not None
    messages = [p.source for p in sample_pairs[:40]]
    states = torch.nn.functional.normalize(torch.randn(5, model.cfg.attentional_size), dim=-1)
    assert torch.allclose(
        taught.nearest_firsts(coarse.table, states, 3)[0], taught.nearest_firsts(exact.table, states, 3)[0], atol=1e-6
    )
    greedy = settings_from("greedy")
    assert [r[0].text for r in reply(model, tokenizer, messages, greedy, taught=coarse)] == [
        r[0].text for r in reply(model, tokenizer, messages, greedy, taught=exact)
    ]


def test_the_reply_a_message_follows_is_chosen_by_the_message_read_without_its_turns(monkeypatch):
    """The turns before a message move its first state towards the replies said in them ("where do
    you work?" after "I live in Busan, by the sea." begins as an answer about where one lives): the
    message's state after its turns is nearer the second reply, read alone it is the first's, and
    the first is followed, its keys raised by what the turns moved."""
    you = 3
    memory = Memory(attentional_size=3)
    memory.you, memory.engine = you, "read alone below"
    keys = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]])
    two_replies(memory, keys, [5, 6, 7, 8])
    monkeypatch.setattr(Taught, "read_alone", lambda self, said, source: torch.tensor([[1.0, 0.0, 0.0]]))
    after_turns = torch.nn.functional.normalize(torch.tensor([[0.3, 0.95, 0.0]]), dim=-1)
    assert (after_turns @ keys[2]) > (after_turns @ keys[0])  # the turns moved it nearer the second
    source = torch.tensor([[you, 9, 4, 10, you, 11]])  # a turn, the bot's turn, the message
    ctx = Context(0, source, None, [], [], query=after_turns)
    first = Taught(memory)(torch.log_softmax(torch.zeros(1, 12), -1), ctx)
    assert first[0].argmax() == 5 and ctx.taught == ([memory.most], [1])


def test_after_turns_that_said_another_taught_reply_a_message_follows_its_own(context_model, sample_pairs):
    """A model that reads turns, four taught replies: each message, after the turns of another's
    taught exchange, follows the reply taught for it (its first piece's taught id)."""
    model, tokenizer = context_model
    messages = [p.source for p in sample_pairs[:4]]
    taught = [f"{word} is what I was taught to say here." for word in ("Otters", "Tulips", "Comets", "Violins")]
    memory = Memory(model.cfg.attentional_size, start=0.0, near=0.0, same=0.5)  # every message follows one
    memory.add(model, tokenizer, [TaughtReply(i, m, t, []) for i, (m, t) in enumerate(zip(messages, taught))])
    greedy = settings_from("greedy")
    alone = [r[0].taught[0] for r in reply(model, tokenizer, messages, greedy, taught=memory)]
    assert [who for _, who in alone] == [0, 1, 2, 3]  # each message alone follows its own
    for i, j in itertools.permutations(range(4), 2):
        turns = [messages[i], taught[i]]
        (r,) = reply(model, tokenizer, [messages[j]], greedy, contexts=[turns], taught=memory)[0]
        assert r.taught[0] is not None and r.taught[0][1] == j, (i, j, r.text)
