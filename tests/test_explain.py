"""The walk-through of one reply (`chatbot explain`, f6 in the chat): its numbers are the ones the
model computes, and every page shows at 80x24 and larger."""

from __future__ import annotations

import json
import math

import pytest
import torch
from rich.console import Console

from chatbot.decoding import GreedySettings, reply
from chatbot.decoding.strategies import EVIDENCE_PER_CANDIDATE
from chatbot.engine import ReferenceEngine
from chatbot.explain import walk_through
from chatbot.explain_pages import pages, times_likelier
from chatbot.i18n import t
from chatbot.model import pad_right
from chatbot.settings import settings_from
from chatbot.storage import Storage
from corpora import Pair
from training.data import encode_pairs
from training.evaluate import total_nll


@pytest.fixture()
def walk(overfit_model, sample_pairs):
    model, tokenizer = overfit_model
    pair = sample_pairs[4]
    return walk_through(model, tokenizer, pair.source, GreedySettings(), reply_text=pair.reply)


def test_the_walk_through_is_what_the_model_computes(walk, overfit_model, sample_pairs):
    model, tokenizer = overfit_model
    pair = sample_pairs[4]
    ids = [p["id"] for p in walk["pieces"]]
    src, lengths = pad_right([ids])
    with torch.no_grad():
        states, final = model.encoder(model.embed(src), lengths)  # (1, S, H), (L, 1, H)
        _, (h0, c0) = model.encode(src, lengths)
    half = model.cfg.hidden_size // 2
    forward, backward = walk["encoder"][0]["forward"], walk["encoder"][0]["backward"]
    assert [s["position"] for s in forward] == list(range(len(ids))) and backward[-1]["position"] == 0
    for s in forward:  # the forward direction's state after each piece is the encoder's output there
        assert torch.allclose(torch.tensor(s["h"]), states[0, s["position"], :half], atol=1e-4)
    assert torch.allclose(torch.tensor(backward[-1]["h"]), final[0, 0, half:], atol=1e-4)
    assert torch.allclose(torch.tensor(walk["bridge"]["h"]), h0.flatten(), atol=1e-4)
    assert torch.allclose(torch.tensor(walk["bridge"]["c"]), c0.flatten(), atol=1e-4)
    # the reply and each chosen piece's probability are decoding's own
    expected = reply(ReferenceEngine(model), tokenizer, [pair.source], GreedySettings())[0][0]
    assert walk["reply"] == expected.text == pair.reply
    for step, logprob in zip(walk["steps"], expected.token_logprobs):
        assert math.isclose(step["logprob"], logprob, abs_tol=1e-5) and math.isclose(
            step["p"], math.exp(logprob), abs_tol=1e-5
        )
        assert math.isclose(sum(step["attention"]), 1.0, abs_tol=1e-3)  # rounded to 4 places each
        assert len(step["attention"]) == len(step["scores"]) == len(ids)
    # teacher forcing's cross-entropy is the loss evaluation measures on that pair
    examples = encode_pairs(
        [Pair(pair.source, pair.reply)], tokenizer, model.cfg.max_source_tokens, None, model.cfg.context_turns
    )
    nll, tokens = total_nll(model, examples)
    assert math.isclose(walk["teacher_forcing"]["total_nll"], nll, rel_tol=1e-4)
    assert len(walk["teacher_forcing"]["positions"]) == tokens


def test_sampling_and_beam_search_are_walked_through_as_decoding_runs_them(overfit_model, sample_pairs):
    model, tokenizer = overfit_model
    message = sample_pairs[6].source
    beam = walk_through(model, tokenizer, message, settings_from("beam"))
    assert beam["reply"] == reply(ReferenceEngine(model), tokenizer, [message], settings_from("beam"))[0][0].text
    assert all(
        len(step["kept"]) <= 5 and step["kept"] == sorted(step["kept"], key=lambda c: -c["score"])
        for step in beam["steps"]
    )
    # drawn as a tree: each step grows the hypotheses the step before kept (less the finished ones),
    # and every candidate's score is its parent's plus the log-probability of its piece
    for before, step in zip(beam["steps"], beam["steps"][1:]):
        grown = [c["pieces"] for c in before["kept"] if c["piece"] != "</s>"]
        assert [h["pieces"] for h in step["hypotheses"]] == grown
        parents = {h["row"]: h for h in step["hypotheses"]}
        for c in step["kept"] + step["pruned"]:
            assert c["score"] <= parents[c["parent"]]["score"] + 1e-3
    finished = beam["finished"]
    assert finished[0]["reply"] == beam["reply"]
    assert [f["rank_score"] for f in finished] == sorted((f["rank_score"] for f in finished), reverse=True)
    console = Console(width=80, record=True)
    for page in pages(beam):
        console.print(page)
    drawn = console.export_text()
    assert "├── " in drawn and "<s> " in drawn and beam["reply"] in drawn
    sampled = walk_through(model, tokenizer, message, settings_from("sample", seed=4, top_p=0.5, candidates=1))
    for step in sampled["steps"][:-1]:
        kept = [p for _, p in step["kept"]]
        assert math.isclose(sum(kept), 1.0, abs_tol=0.01) and step["chosen"] in [n for n, _ in step["kept"]]
    assert "consensus" not in sampled


def test_a_consensus_reply_is_walked_through_with_its_candidates_ranked(overfit_model, sample_pairs):
    model, tokenizer = overfit_model
    message, settings = sample_pairs[6].source, settings_from("sample", seed=4, candidates=5)
    walk = walk_through(model, tokenizer, message, settings)
    candidates = walk["consensus"]["candidates"]
    (chosen,) = reply(ReferenceEngine(model), tokenizer, [message], settings)[0]
    expected = [(text, flaw or None) for text, _, flaw in chosen.candidates]
    assert [(c["reply"], c["ranked_last"]) for c in candidates] == expected
    assert candidates[0]["reply"] == chosen.text and walk["consensus"]["evidence"] == 5 * EVIDENCE_PER_CANDIDATE
    console = Console(width=80, record=True)
    console.print(pages(walk)[-1])
    shown = console.export_text()
    assert chosen.text in shown and "agreement" in shown
    candidates[-1]["ranked_last"] = "abrupt"  # as a candidate that stopped where the model would go on is shown
    console = Console(width=80, record=True)
    console.print(pages(walk)[-1])
    shown = console.export_text()
    assert "ranked last" in shown and "stopped abruptly" in shown


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize(
    "strategy, values",
    [("greedy", {}), ("beam", {"beam_size": 3}), ("sample", {"candidates": 1}), ("sample", {"candidates": 6})],
)
def test_the_walk_through_replays_the_reply_the_chat_gave(
    context_dir, tmp_path, sample_pairs, strategy, values, precision
):
    """f6 walks the very decode that replied: the chat's engine and precision, the settings and
    seed it logged, the turns it read. Piece for piece the same reply, and each step's chosen piece
    is what the strategy takes from the probabilities on its page."""
    from chatbot.session import open_session

    session = open_session(context_dir, tmp_path / "chat.db", False, "cpu", strategy, None, precision=precision)
    for name, value in values.items():
        session.update_setting(strategy, name, str(value))
    conversation = [sample_pairs[i].source for i in (4, 6, 8)]  # each reads the turns before it
    for text in conversation:
        user_id = session.log_user(text)
        exchange = session.respond(text, user_id=user_id)
        turns = session.context_of(text, user_id, session.model)
        decoding = session.storage.message(exchange.bot_id)["decoding"]
        settings = settings_from(**json.loads(decoding))
        walk = walk_through(
            session.model, session.tokenizer, text, settings, [u.text for u in turns], [u.role == "bot" for u in turns]
        )
        pieces = session.tokenizer.pieces(exchange.reply.tokens) + ["</s>"] * exchange.reply.finished
        assert walk["reply"] == exchange.reply.text and [p["piece"] for p in walk["path"]] == pieces
        if strategy == "beam":  # each piece of the reply was a kept hypothesis's at its step
            for n, step in enumerate(walk["steps"][: len(pieces)]):
                assert pieces[: n + 1] in [c["pieces"] for c in step["kept"]]
            continue
        assert [step["chosen"] for step in walk["steps"]] == pieces
        for step in walk["steps"]:
            shown = dict(step["top"])
            assert step["chosen"] in shown and math.isclose(shown[step["chosen"]], step["p"], abs_tol=1e-4)
            if strategy == "greedy":
                assert step["top"][0][0] == step["chosen"]  # the most likely piece on the page
            else:
                assert step["chosen"] in [n for n, _ in step["kept"]] or step["how"]["kind"] == "sample_one"
        if values.get("candidates", 1) > 1:
            assert walk["consensus"]["candidates"][0]["reply"] == exchange.reply.text
    session.storage.close()


def test_what_if_forces_a_piece_and_decodes_on_from_there(overfit_model, sample_pairs):
    model, tokenizer = overfit_model
    forced = walk_through(model, tokenizer, sample_pairs[0].source, GreedySettings(), forced={0: "▁i"})
    assert forced["steps"][0]["chosen"] == "▁i" and forced["steps"][0]["why"].startswith("forced")
    assert forced["reply"].startswith("i")


def test_explain_on_the_command_line_as_json_pages_and_a_plot(overfit_dir, sample_pairs, tmp_path, capsys):
    from chatbot.cli import main

    pair = sample_pairs[4]
    argv = ["explain", pair.source, "--model", str(overfit_dir), "--strategy", "greedy", "--reply", pair.reply]
    assert main([*argv, "--json", "--plot", str(tmp_path / "walk.png")]) == 0
    walk = json.loads(capsys.readouterr().out)
    assert walk["reply"] == pair.reply and walk["steps"][0]["attention"] and walk["teacher_forcing"]["positions"]
    assert (tmp_path / "walk.png").stat().st_size > 10_000
    assert main(argv) == 0
    out = capsys.readouterr().out
    for label in (
        "인코더 encoder",
        "디코더 decoder",
        "컨텍스트 벡터 context vector",
        "어텐션 attention",
        "교사 강요 teacher forcing",
    ):
        assert label in out
    assert main(["explain", "hi", "--model", str(overfit_dir), "--force", "x"]) == 1


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
async def test_every_page_of_the_walk_through_shows_in_the_chat(overfit_dir, tmp_path, sample_pairs, size):
    from chatbot.app.chat_app import ChatApp
    from chatbot.app.screens import WalkThroughScreen
    from chatbot.session import open_session

    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None)
    app = ChatApp(session, errors=tmp_path / "errors.log")
    async with app.run_test(size=size) as pilot:
        app.query_one("#prompt").value = sample_pairs[4].source
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.press("f6")
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, WalkThroughScreen) and len(screen.pages) > 5
        for number in range(len(screen.pages)):
            assert screen.page == number
            await pilot.press("right")
        await pilot.press("home")
        assert screen.page == 0
        await pilot.press("end")
        assert screen.page == len(screen.pages) - 1
        await pilot.press("left", "escape")
        assert not isinstance(app.screen, WalkThroughScreen) and not app.unexpected
        # what if: on the first decoder step, 2 forces the second most likely piece and walks on
        await pilot.press("f6")
        await app.workers.wait_for_complete()
        await pilot.pause()
        first = min(app.screen.steps)
        step = app.screen.steps[first]
        await pilot.press("1")  # not a decoder step: a notice, the screen stays
        assert app.screen.page == 0 and isinstance(app.screen, WalkThroughScreen)
        for _ in range(first):
            await pilot.press("right")
        await pilot.press("2")
        await app.workers.wait_for_complete()
        await pilot.pause()
        again = app.screen
        assert isinstance(again, WalkThroughScreen) and again is not screen and again.page == first
        forced = again.steps[first]
        assert forced["chosen"] == step["top"][1][0] and forced["how"]["kind"] == "forced"
        assert not app.unexpected
    session.storage.close()


def test_walk_through_page_snapshot(snap_compare, random_model, tokenizer, overfit_dir, tmp_path, sample_pairs):
    """The page's layout, drawn from an untrained model: its weights come from a seed, the same on
    every machine, where a trained one's differ in the last digits from one CPU to the next."""
    from chatbot.app.chat_app import ChatApp
    from chatbot.app.screens import WalkThroughScreen
    from chatbot.session import open_session

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in random_model.parameters():  # spread out: scores far from rounding to -0.00
            weight.copy_(torch.randn(weight.shape, generator=generator) * 0.3)
    pair = sample_pairs[4]
    walk = walk_through(random_model, tokenizer, pair.source, GreedySettings(), reply_text=pair.reply)
    Storage(tmp_path / "chat.db").close()  # a log from before: no first-run notice (its path differs per run)
    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None, load=False)

    async def open_page(pilot):
        pilot.app.push_screen(WalkThroughScreen(pages(walk), "Walk-through"))
        await pilot.pause()
        await pilot.press("right", "right", "right")  # the first decoder step
        await pilot.pause()

    assert snap_compare(ChatApp(session), terminal_size=(80, 24), run_before=open_page)


def test_the_phrase_sample_trains_a_tiny_translation_model_to_walk_through(tmp_path, capsys):
    """The explainers' own example at tiny size: English phrases to Korean (`make phrases`)."""
    from chatbot.cli import main
    from corpora import load_pairs

    pairs = load_pairs("phrases")
    assert len(pairs) >= 200 and ("Thank you", "고마워") in [(p.source, p.reply) for p in pairs]
    out = tmp_path / "phrases"
    argv = ["train", "--corpus", "phrases", "--out", str(out), "--epochs", "150", "--embedding-dim", "32"]
    argv += [
        "--hidden-size",
        "64",
        "--vocab-size",
        "1000",
        "--max-tokens",
        "1000",
        "--lr",
        "0.01",
        "--attention",
        "dot",
    ]
    argv += ["--context-turns", "0", "--blank-source", "0", "--dropout", "0", "--quiet", "--threads", "1"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["explain", "Thank you", "--model", str(out), "--strategy", "greedy", "--json"]) == 0
    walk = json.loads(capsys.readouterr().out)
    assert [p["piece"] for p in walk["pieces"]] == ["▁Thank", "▁you"]
    assert any("\uac00" <= ch <= "\ud7a3" for ch in walk["reply"])  # Hangul: it learned to answer in Korean


async def test_a_sampled_reply_shows_its_agreement_and_is_walked_through_with_its_own_seed(
    overfit_dir, tmp_path, sample_pairs
):
    import sqlite3

    from chatbot.app.chat_app import ChatApp
    from chatbot.app.screens import WalkThroughScreen
    from chatbot.app.widgets import MessageView
    from chatbot.session import open_session

    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "sample", None, precision="int8")
    session.update_setting("sample", "candidates", "6")  # int8 replies, as the chat on a CPU: drawn again by them
    app = ChatApp(session, errors=tmp_path / "errors.log")
    async with app.run_test(size=(120, 36)) as pilot:
        replies = []
        for _ in range(2):
            app.query_one("#prompt").value = sample_pairs[3].source
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            replies.append(app.query(MessageView).last())
        seeds = [view.decoding["seed"] for view in replies]
        assert all(isinstance(seed, int) for seed in seeds) and seeds[0] != seeds[1]  # drawn afresh, recorded
        with sqlite3.connect(tmp_path / "chat.db") as db:
            logged = [json.loads(row[0]) for row in db.execute("SELECT decoding FROM messages WHERE role = 'bot'")]
        assert [d["seed"] for d in logged] == seeds and [d["agreement"] for d in logged] == [
            view.decoding["agreement"] for view in replies
        ]
        bot = replies[-1]
        assert f"agreement {bot.decoding['agreement']:.2f}, best of 6" in bot.caption
        await pilot.press("f6")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, WalkThroughScreen)
        console = Console(record=True, width=200)
        console.print(app.screen.pages[-2])  # the consensus page (teacher forcing follows): drawn again
        page = console.export_text()
        assert t("walk.consensus") in page
        first = next(line for line in page.splitlines() if line.strip().startswith("1 "))
        assert bot.text in first
        assert not app.unexpected
    session.storage.close()


async def test_f6_walks_a_beam_reply_with_the_settings_it_was_decoded_with(overfit_dir, tmp_path, sample_pairs):
    """Settings changed after a reply (f2) do not change how f6 explains that reply."""
    import chatbot.explain
    from chatbot.app.chat_app import ChatApp
    from chatbot.app.screens import WalkThroughScreen
    from chatbot.session import open_session

    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "beam", None)
    session.update_setting("beam", "beam_size", "3")
    app = ChatApp(session, errors=tmp_path / "errors.log")
    walked, walk_through = [], chatbot.explain.walk_through

    def watched(model, tokenizer, message, settings, *args, **kwargs):  # the real walk, its settings kept
        walked.append(settings)
        return walk_through(model, tokenizer, message, settings, *args, **kwargs)

    chatbot.explain.walk_through = watched
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            app.query_one("#prompt").value = sample_pairs[3].source
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            session.update_setting("beam", "beam_size", "7")  # as f2 does, after the reply
            await pilot.press("f6")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert isinstance(app.screen, WalkThroughScreen) and not app.unexpected
    finally:
        chatbot.explain.walk_through = walk_through
    session.storage.close()
    assert [s.beam_size for s in walked] == [3]


async def test_f6_on_each_reply_of_a_conversation_walks_the_decode_that_wrote_it(context_dir, tmp_path, sample_pairs):
    """Two messages sent at once (the second waits for the first reply and reads it): f6 on each
    reply, int8 consensus as the chat runs on a CPU, walks the very reply on screen."""
    import chatbot.explain
    from chatbot.app.chat_app import ChatApp
    from chatbot.app.screens import WalkThroughScreen
    from chatbot.app.widgets import MessageView
    from chatbot.session import open_session

    session = open_session(context_dir, tmp_path / "chat.db", False, "cpu", "sample", None, precision="int8")
    session.update_setting("sample", "candidates", "6")
    app = ChatApp(session, errors=tmp_path / "errors.log")
    walks, walk_through = [], chatbot.explain.walk_through

    def kept(*args, **kwargs):  # the real walk, its result kept
        walks.append(walk_through(*args, **kwargs))
        return walks[-1]

    chatbot.explain.walk_through = kept
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            first, second = sample_pairs[4].source, sample_pairs[6].source
            for text in (first, second):
                app.query_one("#prompt").value = text
                await pilot.press("enter")
            await app.workers.wait_for_complete()
            bots = [v for v in app.query(MessageView) if v.role == "bot"]
            assert len(bots) == 2 and all(b.text for b in bots)
            for bot in bots:
                bot.focus()
                await pilot.press("f6")
                await app.workers.wait_for_complete()
                await pilot.pause()
                assert isinstance(app.screen, WalkThroughScreen)
                assert walks[-1]["reply"] == bot.text
                await pilot.press("escape")
            assert walks[1]["context"][-2:] == [first, bots[0].text]  # the second read the first reply
            assert not app.unexpected
    finally:
        chatbot.explain.walk_through = walk_through
    session.storage.close()


def test_a_copy_model_is_walked_through_with_its_gate_and_what_it_copied(random_model, tokenizer, sample_pairs):
    """With copy attention each step shows the gate and the share of the chosen piece's probability
    the message gave, from the message positions holding that piece; the probabilities shown are
    the mixture's, the ones decoding chose by, and a page says so."""
    model = random_model.with_settings(copy_attention=True).eval()
    with torch.no_grad():
        model.copy.gate.bias.fill_(-4.0)  # copy nearly always: the reply is made of the message's pieces
    message = sample_pairs[2].source
    walk = walk_through(model, tokenizer, message, GreedySettings(max_length=6), reply_text=sample_pairs[2].reply)
    expected = reply(ReferenceEngine(model), tokenizer, [message], GreedySettings(max_length=6))[0][0]
    ids = [p["id"] for p in walk["pieces"]]
    assert walk["reply_ids"] == expected.tokens
    for step, piece, logprob in zip(walk["steps"], expected.tokens, expected.token_logprobs):
        copy = step["copy"]
        assert math.isclose(step["logprob"], logprob, abs_tol=1e-4)
        assert 0 < copy["gate"] < 0.05 and copy["positions"] == [i for i, p in enumerate(ids) if p == piece]
        assert copy["positions"] and copy["share"] > 0.5  # a copied piece, its probability mostly the message's
    console = Console(width=80, record=True)
    console.print(pages(walk)[2 + len(walk["encoder"])])
    assert "copy attention" in console.export_text()


def test_how_many_times_likelier_fits_a_column_however_large():
    shown = [times_likelier(math.log(r)) for r in (0.25, 6.7, 189.1, 50_286.9, 999_999, 5_032_361.9, 5e21)]
    assert shown == ["0.2", "6.7", "189", "50k", "1M", "5M", "5e+21"]
    assert times_likelier(float("inf")) == "5e+21"  # capped: a piece no message could give stays readable
