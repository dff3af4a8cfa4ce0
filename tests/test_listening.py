"""Replies that depend on what was said: the conversation read as one source, sources blanked in
training, guided decoding, and the measures that show it (hits@1, F1, generic rate)."""

from __future__ import annotations

import json
import math
import random
import sqlite3

import pytest
import torch

from chatbot.consensus import normalise, unigram_f1
from chatbot.decoding import BeamSettings, GreedySettings, SampleSettings, decode, reply
from chatbot.model import Memory, ModelConfig
from chatbot.tokenizer import BOS, EOS
from corpora import Pair
from training.data import blank_sources, encode_pairs, with_talk_before
from training.evaluate import CANDIDATES, candidate_sets, generic_rate, hits_at_1, repetition_rate

V = 8  # 0-3 pad, unk, bos, eos; 4-7 words


# --- reading a conversation -----------------------------------------------------------------


def test_a_conversation_is_one_source_with_each_turn_after_its_speakers_mark(tokenizer):
    you, me = tokenizer.speakers
    a, b, m = tokenizer.encode("hi there"), tokenizer.encode("hello!"), tokenizer.encode("how are you?")
    assert tokenizer.dialog("how are you?", ["older", "hi there", "hello!"], turns=2) == [you, *a, me, *b, you, *m]
    assert tokenizer.dialog("how are you?", ["hi there", "hello!"], 2, mine=[False, False]) == [
        you,
        *a,
        you,
        *b,
        you,
        *m,
    ]
    assert tokenizer.dialog("how are you?", ["hi there"], turns=0) == m  # a model that reads the message alone
    assert you not in tokenizer.encode("<you> <me>") and set(tokenizer.speakers) <= set(tokenizer.never_written())


def test_training_examples_read_the_turns_before_and_keep_the_end(tokenizer):
    you, me = tokenizer.speakers
    pair = Pair("how are you?", "fine", ("hi there", "hello!"))
    ((src, rep),) = encode_pairs([pair], tokenizer, max_source=64, context_turns=2)
    assert src == tokenizer.dialog(pair.source, pair.context, 2) and rep == tokenizer.encode("fine") + [EOS]
    ((alone, _),) = encode_pairs([pair], tokenizer, max_source=64, context_turns=2, with_context=False)
    assert alone == [you, *tokenizer.encode("how are you?")]
    ((cut, _),) = encode_pairs([pair], tokenizer, max_source=4, context_turns=2)
    assert cut == src[-4:]  # the oldest pieces go first


def test_single_pairs_get_other_pairs_as_turns_before_and_conversations_keep_theirs():
    single = [Pair(f"q{i}", f"a{i}") for i in range(1000)]
    written = [Pair("what is my name?", "Sam.", ("I am Sam.", "Hi Sam!"))] * 100
    once = with_talk_before(single + written, 0.5, random.Random(3))
    assert once == with_talk_before(single + written, 0.5, random.Random(3))
    assert once[1000:] == written and [p[:2] for p in once[:1000]] == [p[:2] for p in single]
    given = [p for p in once[:1000] if p.context]
    assert 400 < len(given) < 600
    assert all(len(p.context) in (2, 4) and all(t[0] in "qa" for t in p.context) for p in given)
    assert with_talk_before(single, 0.0, random.Random(3)) == single


def test_blanking_empties_about_the_share_asked_and_is_the_same_for_the_same_seed():
    examples = [([5, 6, 7], [8, EOS])] * 2000
    once = blank_sources(examples, 0.1, random.Random(3))
    assert once == blank_sources(examples, 0.1, random.Random(3))
    blanked = sum(src == [EOS] for src, _ in once)
    assert 150 < blanked < 250 and all(rep == [8, EOS] for _, rep in once)
    assert blank_sources(examples, 0.0, random.Random(3)) == examples


# --- guided decoding, on hand-made distributions ---------------------------------------------------


class TwinTable:
    """A stand-in model whose next-piece distribution depends on the last piece and on whether it
    read a message (any source but a lone EOS): every guided score can be worked out by hand."""

    def __init__(self, with_message: dict, without: dict, unconditional: bool = True):
        self.tables = [self._table(with_message), self._table(without)]
        self.device = torch.device("cpu")
        self.cfg = ModelConfig(vocab_size=V, embedding_dim=4, hidden_size=4, unconditional=unconditional)

    @staticmethod
    def _table(probs):
        table = torch.full((V, V), -1e9)
        for prev, nxt in probs.items():
            for tok, p in nxt.items():
                table[prev, tok] = math.log(p)
        return table.log_softmax(-1)

    def encode(self, src, lengths):
        B, S = src.shape
        blank = ((lengths == 1) & (src[:, 0] == EOS)).float()  # (B,)
        states = blank.view(B, 1, 1).expand(B, S, 1).contiguous()  # the decoder can tell which it read
        bias = torch.zeros(B, 1, S).masked_fill(~(torch.arange(S) < lengths.unsqueeze(1)).unsqueeze(1), float("-inf"))
        return Memory(states, states, bias, src), (torch.zeros(1, B, 1), torch.zeros(1, B, 1))

    def initial_feed(self, rows):
        return torch.zeros(rows, 1)

    def step(self, tokens, state, memory, feed):
        blank = memory.states[:, 0, 0] > 0.5  # (R,)
        logits = torch.where(blank.unsqueeze(1), self.tables[1][tokens], self.tables[0][tokens])
        real = (memory.bias[:, 0] == 0).float()
        return logits, state, real / real.sum(-1, keepdim=True), feed


# With a message, "4" (a stock reply) is likelier than "5"; without one, "4" is far likelier still:
# the message raises "5" (0.4 against 0.05) and lowers "4" (0.6 against 0.95).
WITH = {BOS: {4: 0.6, 5: 0.4}, 4: {EOS: 1.0}, 5: {EOS: 1.0}}
WITHOUT = {BOS: {4: 0.95, 5: 0.05}, 4: {EOS: 1.0}, 5: {EOS: 1.0}}


@pytest.mark.parametrize("w, expected", [(0.0, 4), (0.5, 5), (2.0, 5)])
def test_guidance_scores_what_the_message_adds(w, expected):
    table = TwinTable(WITH, WITHOUT)
    ((best,),) = decode(table, [[6, 7]], GreedySettings(guidance=w), gains=True)
    assert best.tokens == [expected]
    guided = torch.tensor([0.6, 0.4]).log() + w * (torch.tensor([0.6, 0.4]).log() - torch.tensor([0.95, 0.05]).log())
    assert math.isclose(best.logprobs[0], float(guided.log_softmax(-1)[expected - 4]), rel_tol=1e-5)
    assert math.isclose(best.gains[0], math.log((0.6, 0.4)[expected - 4] / (0.95, 0.05)[expected - 4]), rel_tol=1e-5)


def test_guidance_in_beam_search_and_sampling_and_batches():
    table = TwinTable(WITH, WITHOUT)
    beams = decode(table, [[6], [6, 7, 6]], BeamSettings(beam_size=2, n_best=2, guidance=2.0))
    assert [[h.tokens for h in message] for message in beams] == [[[5], [4]], [[5], [4]]]
    drawn = [decode(table, [[6]], SampleSettings(guidance=3.0, seed=s))[0][0].tokens[0] for s in range(200)]
    assert drawn.count(5) > 150  # guided: 5 is far likelier than 4; unguided it would be 40%


def test_beam_search_ranks_its_candidates_by_what_the_message_adds():
    """Rerank r orders beam search's candidates by (1 - r) score + r (log p(reply | message) -
    log p(reply | no message)): the stock "4" is likelier, but the message raised "5"."""
    table = TwinTable(WITH, WITHOUT)
    by_score = decode(table, [[6]], BeamSettings(beam_size=2, n_best=2, guidance=0.0, rerank=0.0))[0]
    assert [h.tokens for h in by_score] == [[4], [5]]
    gain = {4: math.log(0.6 / 0.95), 5: math.log(0.4 / 0.05)}  # the EOS after either: 1.0 with and without
    for r in (0.5, 1.0):
        ranked = decode(table, [[6]], BeamSettings(beam_size=2, n_best=2, guidance=0.0, rerank=r))[0]
        assert [h.tokens for h in ranked] == [[5], [4]]
        for h, before in zip(ranked, reversed(by_score)):
            expected = (1 - r) * before.score + r * gain[h.tokens[0]]
            assert math.isclose(h.score, expected, rel_tol=1e-5)
    unable = TwinTable(WITH, WITHOUT, unconditional=False)
    ((best,),) = decode(unable, [[6]], BeamSettings(beam_size=2, guidance=0.0, rerank=1.0))
    assert best.tokens == [4]  # a model that never learned replies to no message ranks by score


def test_a_reranked_beam_search_waits_for_a_full_beam_of_finished_replies():
    """The likeliest reply ("4") ends first; reranking needs the longer, more specific one too."""
    with_message = {BOS: {4: 0.7, 5: 0.3}, 4: {EOS: 1.0}, 5: {6: 1.0}, 6: {EOS: 1.0}}
    without = {BOS: {4: 0.95, 5: 0.05}, 4: {EOS: 1.0}, 5: {6: 1.0}, 6: {EOS: 1.0}}
    table = TwinTable(with_message, without)
    ((by_score,),) = decode(table, [[6]], BeamSettings(beam_size=2, guidance=0.0, rerank=0.0))
    assert by_score.tokens == [4]
    ((reranked,),) = decode(table, [[6]], BeamSettings(beam_size=2, guidance=0.0, rerank=1.0))
    assert reranked.tokens == [5, 6]


def test_a_model_that_never_learned_replies_to_no_message_is_not_guided():
    table = TwinTable(WITH, WITHOUT, unconditional=False)
    ((best,),) = decode(table, [[6]], GreedySettings(guidance=5.0), gains=True)
    assert best.tokens == [4] and best.gains is None


def test_the_context_model_learned_replies_to_no_message_and_its_replies_carry_the_messages_gain(
    context_model, sample_pairs
):
    model, tokenizer = context_model
    assert model.cfg.unconditional and model.cfg.context_turns == 2
    pairs = sample_pairs[:8]  # learned with and without the turns before them: asked here without
    messages = [p.source for p in pairs]
    plain = reply(model, tokenizer, messages, GreedySettings(guidance=0.0), gains=True)
    assert [r[0].text for r in plain] == [p.reply for p in pairs]
    assert all(len(r[0].gains) == len(r[0].tokens) + 1 for r in plain)
    assert sum(g for r in plain for g in r[0].gains) > 0  # the messages made their replies likelier
    guided = reply(model, tokenizer, messages, GreedySettings(guidance=1.0))
    assert all(r[0].settings["guidance"] == 1.0 and r[0].text for r in guided)


# --- measures ------------------------------------------------------------------------------------


def test_unigram_f1_normalises_as_parlai_does():
    assert normalise("The cat, a DOG and an owl!") == ["cat", "dog", "and", "owl"]
    assert unigram_f1("the cat sat", "a cat sat down") == pytest.approx(2 * (2 / 2) * (2 / 3) / (1 + 2 / 3))
    assert unigram_f1("hello", "goodbye") == 0.0 and unigram_f1("Yes!", "yes") == 1.0


def test_generic_rate_counts_replies_among_the_ten_most_frequent():
    replies = ["i don't know."] * 5 + ["I don't know. "] * 5 + [f"reply {i}" for i in range(20)]
    top = 1 + 9  # "i don't know." and nine replies seen once
    assert generic_rate(replies) == pytest.approx((10 + top - 1) / 30)


def test_repetition_rate_counts_a_content_word_or_a_word_pair_said_twice():
    common = {"i", "have", "and", "also", "like", "really", "love", "so"}
    repeating = ["I have a dog and I also like the dog", "I really love food and food.", "Its blue, green, blue"]
    repeating.append("I think I think so")  # "i think" twice: a word pair, though made of common words
    fine = ["I have a dog.", "I really, really love it", "나 요즘 너무 우울해"]  # common words may come back
    assert repetition_rate(repeating + fine, common) == pytest.approx(4 / 7)
    assert repetition_rate([], common) == 0.0


def test_candidates_are_the_own_reply_and_19_others_with_different_text():
    pairs = [Pair(f"m{i}", f"r{i % 25}") for i in range(40)]
    sets = candidate_sets(pairs, seed=0)
    assert sets == candidate_sets(pairs, seed=0) and all(len(s) == CANDIDATES and s[0] == i for i, s in enumerate(sets))
    assert all(
        len(set(s)) == CANDIDATES and all(pairs[j].reply != pairs[i].reply for j in s[1:]) for i, s in enumerate(sets)
    )


def test_a_model_that_memorised_its_pairs_ranks_their_replies_first(overfit_model, sample_pairs):
    model, tokenizer = overfit_model
    with torch.inference_mode():
        learned = [Pair(p.source, p.reply) for p in sample_pairs[:30]]  # as it learned them: from a TSV file
        hits = hits_at_1(model, tokenizer, learned, guidance=1.0)
    assert hits["likelihood"] > 0.8 and hits["chat"] == hits["guided"] > 0.8  # chance: 0.05
    assert set(hits) == {"likelihood", "per_piece", "mutual_information", "guided", "chat"}


def test_evaluate_reports_every_measure_in_its_json(overfit_dir, tmp_path, capsys):
    from chatbot.cli import main
    from chatbot.settings import DEFAULT_CANDIDATES
    from tests.conftest import write_tsv

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps(["hi there", "hello! how are you?", "fine, thanks.", "what do you do?"]) + "\n")
    code = main(
        [
            "evaluate",
            "--model",
            str(overfit_dir),
            "--corpus",
            "sample",
            "--json",
            "--generate",
            "greedy",
            "sample",
            "--threads",
            "1",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    for key in ("word_ppl", "word_ppl_no_context", "token_ppl", "pairs", "words", "tokens", "hits_at_1", "guidance"):
        assert key in out, key
    for name in ("greedy", "sample"):
        for key in ("f1", "distinct_1", "distinct_2", "mean_words", "generic_rate"):
            assert out["generate"][name][key] >= 0 and out["generate"][name]["with_context"][key] >= 0
    assert out["generate"]["sample"]["settings"]["candidates"] == DEFAULT_CANDIDATES  # the chat's
    args = ["evaluate", "--model", str(overfit_dir), "--corpus", "sample", "--json", "--generate", "sample"]
    assert main([*args, "--candidates", "1", "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["generate"]["sample"]["settings"]["candidates"] == 1
    write_tsv(tmp_path / "few.tsv", [Pair("a", "b"), Pair("c", "d")])
    assert main(["evaluate", "--model", str(overfit_dir), "--pairs", str(tmp_path / "few.tsv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hits_at_1"] is None  # under 20 different replies: no candidates


# --- the chat and the command line ---------------------------------------------------------------


async def test_the_chat_reads_the_conversation_and_logs_which_turns(context_dir, tmp_path, sample_pairs):
    from chatbot.app.chat_app import ChatApp
    from chatbot.session import open_session

    session = open_session(context_dir, tmp_path / "chat.db", False, "cpu", "greedy", None)
    app = ChatApp(session, errors=tmp_path / "errors.log")
    async with app.run_test() as pilot:
        for pair in sample_pairs[:3]:
            app.query_one("#prompt").value = pair.source
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
    rows = list(sqlite3.connect(tmp_path / "chat.db").execute("select id, role, context from messages order by id"))
    ids = [r[0] for r in rows]
    assert [r[1] for r in rows] == ["user", "bot"] * 3
    assert json.loads(rows[1][2]) == [] and json.loads(rows[3][2]) == ids[:2] and json.loads(rows[5][2]) == ids[2:4]
    session.storage.close()


def test_reply_reads_conversations_one_a_line(context_dir, sample_pairs, capsys, monkeypatch):
    import io

    from chatbot.cli import main

    pair = sample_pairs[2]
    lines = [json.dumps([*pair.context, pair.source]), json.dumps([pair.source]), "[1, 2]", "not json"]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("\n".join(lines).encode() + b"\n")))
    argv = ["reply", "--model", str(context_dir), "--conversations", "--json", "--threads", "1", "--strategy", "greedy"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = [json.loads(line) for line in captured.out.splitlines()]
    assert out[0]["reply"] == pair.reply and out[0]["context"] == list(pair.context)
    assert out[2]["reply"] == out[3]["reply"] == "" and "line 3 is not a JSON list" in captured.err
