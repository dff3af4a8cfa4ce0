"""Consensus sampling: many replies drawn, the one the model's other replies agree with most
answers. Checked against F1 worked out pair by pair, on a hand-made table whose likeliest reply
is not the consensus, and on a tiny trained model."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatbot.consensus import agreement, repeats, unigram_f1, word_pairs
from chatbot.decoding import GreedySettings, SampleSettings, decode, forced_gains, reply, strategies
from chatbot.decoding.strategies import EVIDENCE_PER_CANDIDATE, choose_by_consensus, ending_logprob, sampled_rows
from chatbot.engine import as_engine
from chatbot.settings import settings_from
from chatbot.tokenizer import EOS
from tests import test_decoding
from tests.test_decoding import BigramTable

words = st.lists(st.sampled_from(["i", "you", "like", "cats", "dogs", "yes"]), max_size=6)


@given(st.lists(words, min_size=1, max_size=4), st.lists(words, min_size=1, max_size=5))
def test_agreement_is_the_mean_f1_with_every_evidence_reply(candidates, evidence):
    expected = [sum(unigram_f1(" ".join(c), " ".join(e)) for e in evidence) / len(evidence) for c in candidates]
    assert agreement(candidates, evidence) == pytest.approx(expected, abs=1e-6)


def test_word_pairs_favour_a_reply_said_as_the_evidence_says_it_over_a_list_of_its_words():
    evidence = [r.split() for r in ("my favorite color is blue", "i like blue and green", "my favorite is green")]
    fluent, listing = ["my", "favorite", "color", "is", "green"], ["blue", "green", "blue", "and", "green", "color"]
    single, paired = agreement([fluent, listing], evidence), agreement([fluent, listing], evidence, pairs=0.5)
    assert paired[0] - paired[1] > single[0] - single[1]

    def bag_f1(a: list, b: list) -> float:
        shared = sum((Counter(a) & Counter(b)).values())
        return 2 * shared / (len(a) + len(b)) if shared else 0.0

    expected = [0.5 * s + 0.5 * sum(bag_f1(word_pairs(c), word_pairs(e)) for e in evidence) / 3
                for s, c in zip(single, (fluent, listing))]  # fmt: skip
    assert paired == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "reply, repeated",
    [("blue green blue", True), ("i like it and i like you", True), ("i think i will go to the park", False)],
)
def test_a_candidate_repeats_a_long_word_or_a_word_pair(reply, repeated):
    assert repeats(reply.split()) == repeated


def test_each_message_gets_its_candidate_that_the_evidence_agrees_with_most(monkeypatch):
    monkeypatch.setattr(strategies, "CONSENSUS_PAIRS", 0.0)  # unigram F1 alone: worked out by hand below
    replies = [
        [4, EOS],  # message 0: candidates
        [5, 6, EOS],
        [5, 6],  # evidence
        [5, 7, EOS, EOS],
        [4],
        [7],  # message 1: candidates
        [6],
        [6],  # evidence
        [6, 7],
        [6],
    ]
    chosen, ranked = choose_by_consensus(replies, messages=2, candidates=2, words=lambda ids: [str(i) for i in ids])
    assert chosen == [1, 6]
    assert [[pieces for pieces, *_ in r] for r in ranked] == [[[5, 6], [4]], [[6], [7]]]
    agreed = [[agreement for _, agreement, _ in r] for r in ranked]
    assert agreed[0] == pytest.approx([(1 + 0.5 + 0) / 3, (0 + 0 + 1) / 3])
    assert agreed[1] == pytest.approx([(1 + 2 / 3 + 1) / 3, (0 + 2 / 3 + 0) / 3])


FRAME_WORDS = {4: ["my", "name", "is"], 15: []}  # 15: "?"; 5-14: names


def frame_words(ids: list[int]) -> list[str]:
    return [w for i in ids for w in FRAME_WORDS.get(i, [f"name{i}"])]


@pytest.mark.parametrize(
    "pieces, logps, expected",
    [
        ([4, 15], [-0.1, -3.2, -0.2], -3.2),  # "my name is?": the "?" ended its words
        ([4, 7], [-0.1, -2.3, -0.4], -0.4),  # "my name is Elena": the end after the name did
        ([4, 7, 15, 15], [-0.1, -2.3, -0.5, -0.6, -0.1], -0.5),  # the first mark after the last word
        ([4, 7], [-0.1, -2.3], 0.0),  # it ran out of length: nothing ended it
    ],
)
def test_a_reply_ends_at_the_piece_after_its_last_word(pieces, logps, expected):
    assert ending_logprob(pieces, logps, frame_words, frame_words(pieces)) == expected


def test_a_candidate_that_stopped_abruptly_is_ranked_after_those_that_ended(monkeypatch):
    monkeypatch.setattr(strategies, "ABRUPT_END", 0.05)
    replies = [[4, 15, EOS], [4, 5, EOS], [4, 6, EOS], [4, 7, EOS]]  # two candidates, then the evidence
    logps = [[-0.1, -3.2, 0.0], [-0.1, -2.3, -0.1], [-0.1, -2.3, 0.0], [-0.1, -2.3, 0.0]]  # "?" given 4%
    _, plain = choose_by_consensus(replies, messages=1, candidates=2, words=frame_words)
    chosen, ranked = choose_by_consensus(replies, messages=1, candidates=2, words=frame_words, logps=logps)
    assert plain[0][0][0] == [4, 15]  # by agreement alone the frame wins: it agrees with every name
    assert chosen == [1] and [(pieces, flaw) for pieces, _, flaw in ranked[0]] == [([4, 5], ""), ([4, 15], "abrupt")]
    assert ranked[0][1][1] > ranked[0][0][1]  # ranked last, its agreement unchanged


def test_consensus_answers_with_a_name_not_the_frame_every_name_shares(monkeypatch):
    """After "my name is" the model spreads 96% over ten names and gives "?" 4%: the frame "my
    name is?" agrees with every evidence reply better than any one name does, and ended where
    the model would rather go on."""
    monkeypatch.setattr(test_decoding, "V", 16)
    after_frame = {**dict.fromkeys(range(5, 15), 0.096), 15: 0.04}
    table = BigramTable({2: {4: 1.0}, 4: after_frame, **{n: {EOS: 1.0} for n in range(5, 16)}})
    drew_the_frame = 0
    for seed in range(6):
        settings = SampleSettings(candidates=64, temperature=1.0, top_p=1.0, seed=seed)
        monkeypatch.setattr(strategies, "ABRUPT_END", 0.0)
        (plain,) = decode(table, [[4]], settings, words=frame_words)[0]
        monkeypatch.setattr(strategies, "ABRUPT_END", 0.05)
        (best,) = decode(table, [[4]], settings, words=frame_words)[0]
        if [4, 15] in [pieces for pieces, *_ in best.candidates]:
            drew_the_frame += 1
            assert plain.tokens == [4, 15]
        assert best.tokens[0] == 4 and 5 <= best.tokens[1] < 15
    assert drew_the_frame >= 4


def test_rows_per_message_are_the_candidates_and_their_evidence():
    assert sampled_rows(SampleSettings(candidates=1)) == 1
    assert sampled_rows(SampleSettings(candidates=8)) == 8 * (1 + EVIDENCE_PER_CANDIDATE)


# replies: [4] with p 0.34, [5 7] and [6 7] with 0.33 each; read 5 and 6 as the same word and the
# consensus is "x 7" (0.66 of the evidence), though the likeliest single reply is [4]
SPLIT_VOTE = BigramTable({2: {4: 0.34, 5: 0.33, 6: 0.33}, 4: {EOS: 1.0}, 5: {7: 1.0}, 6: {7: 1.0}, 7: {EOS: 1.0}})


def same_word_for_5_and_6(ids: list[int]) -> list[str]:
    return ["x" if i in (5, 6) else str(i) for i in ids]


def test_the_consensus_is_not_the_likeliest_reply_but_the_one_most_replies_resemble():
    likeliest = decode(SPLIT_VOTE, [[4]], GreedySettings())[0][0].tokens
    assert likeliest == [4]
    for seed in range(10):
        settings = SampleSettings(candidates=64, temperature=1.0, top_p=1.0, seed=seed)
        for (best,) in decode(SPLIT_VOTE, [[4], [5]], settings, words=same_word_for_5_and_6):  # two messages
            assert best.tokens in ([5, 7], [6, 7]) and best.finished
            assert 0.5 < best.agreement < 0.8  # the share of evidence replies that are "x 7"


def test_a_consensus_reply_is_the_same_for_the_same_seed_and_one_candidate_is_plain_sampling(overfit_model):
    model, tokenizer = overfit_model
    for settings in (settings_from("sample", seed=3, candidates=6), settings_from("sample", seed=3, candidates=1)):
        runs = [reply(model, tokenizer, ["hi there", "what is your name?"], settings) for _ in range(2)]
        assert [[r.text for r in rs] for rs in runs[0]] == [[r.text for r in rs] for rs in runs[1]]
    plain = decode(model, [tokenizer.encode("hi there")], settings_from("sample", seed=3, candidates=1))
    assert plain[0][0].agreement is None
    (chosen,) = reply(model, tokenizer, ["hi there"], settings_from("sample", seed=3, candidates=6))[0]
    assert chosen.agreement is not None and 0.0 <= chosen.agreement <= 1.0
    assert len(chosen.candidates) == 6 and chosen.candidates[0][:2] == (chosen.text, chosen.agreement)
    flawless, flawed = ([a for _, a, f in chosen.candidates if bool(f) == w] for w in (False, True))
    assert [a for _, a, _ in chosen.candidates] == sorted(flawless, reverse=True) + sorted(flawed, reverse=True)
    assert chosen.settings["candidates"] == 6


def test_gains_measured_after_the_choice_equal_the_twin_rows_gains(context_model):
    """A consensus reply's gains are measured once it is chosen, by reading it again beside no
    message: the same numbers the twin rows give while decoding."""
    model, tokenizer = context_model
    sources = [tokenizer.encode(m) for m in ("hi there", "what is your name?", "do you like music?")]
    greedy = decode(model, sources, GreedySettings(), gains=True)
    replies = [h.tokens + [EOS] * h.finished for (h,) in greedy]
    measured = forced_gains(as_engine(model), sources, replies)
    for (h,), g in zip(greedy, measured):
        assert g == pytest.approx(h.gains, abs=1e-4)
    (chosen,) = reply(model, tokenizer, ["hi there"], settings_from("sample", seed=1, candidates=4), gains=True)[0]
    assert len(chosen.gains) == len(chosen.tokens) + chosen.finished


def test_consensus_streams_nothing_until_the_reply_is_chosen(overfit_model):
    model, tokenizer = overfit_model
    seen = []
    settings = settings_from("sample", seed=2, candidates=4)
    (chosen,) = reply(model, tokenizer, ["hi there"], settings, on_text=lambda i, text: seen.append(text))[0]
    assert set(seen) == {""} and chosen.text
    assert len(seen) >= len(chosen.tokens)  # a call every step all the same: the chat cancels through it
