"""Decoding rules, checked exactly: on hand-made log-probability tables, and on tiny real models
against brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.decoding import (
    BeamSettings,
    GreedySettings,
    SampleSettings,
    decode,
    reply,
    sample_from,
    settings_from,
    truncate_distribution,
)
from chatbot.errors import ChatbotError
from chatbot.model import Memory, ModelConfig, Seq2Seq
from chatbot.tokenizer import BOS, EOS

V = 8  # ids 0-3 are pad, unk, bos, eos; 4-7 are words


class BigramTable:
    """A stand-in decoder whose next-token log-probabilities depend only on the last token:
    every rule can then be worked out by hand."""

    def __init__(self, probs: dict[int, dict[int, float]]):
        self.table = torch.full((V, V), -1e9)
        for prev, nxt in probs.items():
            for tok, p in nxt.items():
                self.table[prev, tok] = math.log(p)
        self.table = self.table.log_softmax(-1)
        self.device = torch.device("cpu")
        self.cfg = ModelConfig(vocab_size=V, embedding_dim=4, hidden_size=4)

    def encode(self, src, lengths):
        B, S = src.shape
        mask = torch.arange(S).unsqueeze(0) < lengths.unsqueeze(1)
        states = torch.zeros(B, S, 1)
        bias = torch.zeros(B, 1, S).masked_fill(~mask.unsqueeze(1), float("-inf"))
        return Memory(states, states, bias, src), (torch.zeros(1, B, 1), torch.zeros(1, B, 1))

    def initial_feed(self, rows):
        return torch.zeros(rows, 1)

    def step(self, tokens, state, memory, feed):
        real = (memory.bias[:, 0] == 0).float()  # (R, S)
        weights = real / real.sum(-1, keepdim=True)
        return self.table[tokens], state, weights, feed

    def decoding_functions(self):
        return (lambda memory: memory), self.step  # log-probabilities are logits too


def tokens_of(model, settings, source=(4,)):
    return [h.tokens for h in decode(model, [list(source)], settings)[0]]


def test_greedy_follows_the_most_likely_chain_and_stops_at_eos():
    table = BigramTable({BOS: {4: 0.6, 5: 0.4}, 4: {5: 0.7, EOS: 0.3}, 5: {EOS: 0.9, 6: 0.1}})
    assert tokens_of(table, GreedySettings()) == [[4, 5]]


def test_min_length_forbids_an_early_end():
    table = BigramTable({BOS: {EOS: 0.9, 4: 0.1}, 4: {EOS: 0.8, 5: 0.2}, 5: {EOS: 1.0}})
    assert tokens_of(table, GreedySettings(min_length=0)) == [[]]
    assert tokens_of(table, GreedySettings(min_length=1)) == [[4]]
    assert tokens_of(table, GreedySettings(min_length=2)) == [[4, 5]]


def test_max_length_cuts_and_marks_unfinished():
    table = BigramTable({BOS: {4: 1.0}, 4: {5: 1.0}, 5: {4: 1.0}})
    hyp = decode(table, [[4]], GreedySettings(max_length=5, no_repeat_ngram=0))[0][0]
    assert hyp.tokens == [4, 5, 4, 5, 4] and hyp.finished is False  # the last step could only end: cut, not ended
    assert len(hyp.logprobs) == len(hyp.attention) == len(hyp.alternatives) == 5  # no forced EOS among them
    beam = decode(table, [[4]], BeamSettings(beam_size=2, max_length=5, no_repeat_ngram=0))[0][0]
    assert beam.tokens == [4, 5, 4, 5, 4] and beam.finished is False


def test_no_repeat_ngram_blocks_a_loop():
    table = BigramTable({BOS: {4: 1.0}, 4: {5: 0.9, 6: 0.1}, 5: {4: 0.9, EOS: 0.1}, 6: {EOS: 1.0}})
    assert tokens_of(table, GreedySettings(max_length=6, no_repeat_ngram=0)) == [[4, 5, 4, 5, 4, 5]]
    assert tokens_of(table, GreedySettings(max_length=6, no_repeat_ngram=2)) == [[4, 5, 4, 6]]


def test_source_ngrams_can_be_blocked_too():
    table = BigramTable({BOS: {4: 0.9, 6: 0.1}, 4: {5: 0.9, 7: 0.1}, 5: {EOS: 1.0}, 6: {EOS: 1.0}, 7: {EOS: 1.0}})
    plain = GreedySettings(no_repeat_ngram=2)
    assert tokens_of(table, plain, source=(4, 5)) == [[4, 5]]
    assert tokens_of(table, GreedySettings(no_repeat_ngram=2, block_source_ngrams=True), source=(4, 5)) == [[4, 7]]


def test_beam_finds_what_greedy_misses_and_orders_n_best():
    # greedy takes 4 (0.6) then a flat 4-way choice (0.25 each); 5 (0.4) leads to a certain end.
    table = BigramTable(
        {BOS: {4: 0.6, 5: 0.4}, 4: {6: 0.25, 7: 0.25, EOS: 0.25, 4: 0.25}, 5: {EOS: 1.0}, 6: {EOS: 1.0}, 7: {EOS: 1.0}}
    )
    assert tokens_of(table, GreedySettings())[0][0] == 4
    beam = decode(table, [[4]], BeamSettings(beam_size=3, n_best=3, length_penalty=0.0))[0]
    assert beam[0].tokens == [5]
    assert math.isclose(beam[0].score, math.log(0.4), rel_tol=1e-5)
    scores = [h.score for h in beam]
    assert scores == sorted(scores, reverse=True) and len(beam) == 3


def test_length_penalty_divides_the_score():
    table = BigramTable({BOS: {4: 0.5, 5: 0.5}, 4: {EOS: 1.0}, 5: {6: 1.0}, 6: {EOS: 1.0}})
    alpha = 1.0
    best = decode(table, [[4]], BeamSettings(beam_size=2, n_best=2, length_penalty=alpha))[0]
    lp = lambda n: ((5 + n) / 6) ** alpha  # noqa: E731
    assert [h.tokens for h in best] == [[5, 6], [4]]  # the longer reply wins under the penalty
    assert math.isclose(best[0].score, math.log(0.5) / lp(2), rel_tol=1e-5)


# --- tiny real models ------------------------------------------------------------------------


def tiny_model(seed=0, vocab=V, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab, embedding_dim=8, hidden_size=12, dropout=0.0, **kw)
    model = Seq2Seq(cfg).eval()
    with torch.no_grad():  # make ending likely enough that short replies exist
        model.out.bias[EOS] += 1.5
    return model


def teacher_forced_logprob(model, source, reply_tokens):
    src = torch.tensor([source])
    tgt_in = torch.tensor([[BOS] + reply_tokens])
    tgt_out = torch.tensor([reply_tokens + [EOS]])
    with torch.no_grad():
        logits, targets = model.scored_logits(src, torch.tensor([len(source)]), tgt_in, tgt_out)
        return -torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_equals_brute_force(seed):
    model, source, max_len = tiny_model(seed), [4, 5, 6], 3
    words = range(4, V)
    candidates = [list(c) for n in range(1, max_len + 1) for c in itertools.product(words, repeat=n)]
    scored = {tuple(c): teacher_forced_logprob(model, source, c) for c in candidates}
    best = max(scored, key=scored.get)
    width = len(words) ** max_len  # keeps every prefix
    bare = dict(length_penalty=0.0, max_length=max_len, no_repeat_ngram=0, repetition_penalty=1.0)  # no rules
    hyp = decode(model, [source], BeamSettings(beam_size=width, **bare))[0][0]
    assert tuple(hyp.tokens) == best
    assert math.isclose(hyp.score, scored[best], rel_tol=1e-4, abs_tol=1e-4)


@pytest.mark.parametrize("attention", ["dot", "general", "additive"])
@pytest.mark.parametrize("input_feeding", [False, True])
def test_beam_of_one_top_k_one_and_zero_temperature_equal_greedy(attention, input_feeding):
    model = tiny_model(3, vocab=40, attention=attention, input_feeding=input_feeding)
    sources = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    greedy = [h[0].tokens for h in decode(model, sources, GreedySettings(max_length=10))]
    beam1 = [h[0].tokens for h in decode(model, sources, BeamSettings(beam_size=1, length_penalty=0.0, max_length=10))]
    top1 = [h[0].tokens for h in decode(model, sources, SampleSettings(top_k=1, top_p=1.0, max_length=10, seed=1))]
    cold = [h[0].tokens for h in decode(model, sources, SampleSettings(temperature=0.0, max_length=10))]
    assert greedy == beam1 == top1 == cold


@pytest.mark.parametrize(
    "make", [lambda: GreedySettings(max_length=8), lambda: BeamSettings(beam_size=3, n_best=2, max_length=8)]
)
def test_batched_replies_equal_one_at_a_time(make):
    """(Sampling draws for the whole batch from one generator, so only its seeded repeat is exact.)"""
    model = tiny_model(4, vocab=40)
    sources = [[5, 6, 7], [8], [10, 11, 12, 13, 14, 15]]
    together = decode(model, sources, make())
    alone = [decode(model, [s], make())[0] for s in sources]
    for a, b in zip(together, alone):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        for ha, hb in zip(a, b):
            assert math.isclose(ha.score, hb.score, rel_tol=1e-4, abs_tol=1e-5)


@pytest.mark.parametrize(
    "settings",
    [
        SampleSettings(seed=3, temperature=1.5, max_length=12, candidates=1),
        SampleSettings(seed=5, temperature=1.5, max_length=12, candidates=4),
    ],
)
def test_rows_that_ended_leave_the_batch_without_changing_a_reply(settings, monkeypatch):
    """The loop drops ended rows from the decoder's batch; kept in, every reply, piece
    probability and attention row is the same."""
    import chatbot.decoding.loop as loop

    model = tiny_model(8, vocab=40)
    sources = [[5, 6, 7], [8], [10, 11, 12, 13, 14, 15], [9, 9]]
    leaving = decode(model, sources, settings)
    assert len({len(h[0].tokens) for h in leaving}) > 1  # rows ended at different steps
    monkeypatch.setattr(loop, "LEAVE_AT", 0.0)  # no row ever leaves
    staying = decode(model, sources, settings)
    for a, b in zip(leaving, staying):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        for ha, hb in zip(a, b):
            assert torch.allclose(torch.tensor(ha.logprobs), torch.tensor(hb.logprobs), atol=1e-5)
            assert torch.allclose(torch.tensor(ha.attention), torch.tensor(hb.attention), atol=1e-5)
            assert [[i for i, _ in s] for s in ha.alternatives] == [[i for i, _ in s] for s in hb.alternatives]


def test_repetition_penalty_multiplies_each_seen_pieces_log_probability_once():
    from chatbot.decoding.rules import Context, RepetitionPenalty

    torch.manual_seed(0)
    logp = torch.randn(3, 12).log_softmax(-1)
    history = torch.tensor([[5, 5, 7], [EOS, 4, 9], [6, EOS, EOS]])  # repeats, and EOS after an end
    got = RepetitionPenalty(1.5)(logp.clone(), Context(3, torch.zeros(3, 1, dtype=torch.long), history))
    expected = logp.clone()
    for row, pieces in enumerate(history.tolist()):
        for piece in set(pieces) - {EOS}:
            expected[row, piece] *= 1.5
    assert torch.allclose(got, expected.log_softmax(-1))


def test_same_seed_same_reply():
    model = tiny_model(5, vocab=40)
    runs = [decode(model, [[5, 6]], SampleSettings(seed=11, temperature=1.5))[0][0].tokens for _ in range(2)]
    assert runs[0] == runs[1]


def test_top_p_sampling_matches_the_truncated_renormalised_distribution():
    probs = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    logits = probs.log().unsqueeze(0)
    kept = truncate_distribution(logits, top_k=0, top_p=0.75)
    assert torch.isfinite(kept).tolist() == [[True, True, True, False, False, False]]  # 0.4+0.25 < 0.75 <= 0.8
    expected = probs[:3] / probs[:3].sum()
    n = 20000
    generator = torch.Generator().manual_seed(0)
    draws = sample_from(logits.expand(n, -1), 0, 0.75, generator)
    counts = torch.bincount(draws, minlength=6).float()
    assert counts[3:].sum() == 0
    chi2 = (((counts[:3] - n * expected) ** 2) / (n * expected)).sum().item()
    assert chi2 < 13.8  # chi-square, 2 degrees of freedom, p = 0.001


@pytest.mark.parametrize(
    "top_k, top_p, expected",
    [
        (3, 1.0, [0.5, 0.3125, 0.1875]),  # the top 3, renormalised
        (3, 0.7, [0.5 / 0.8125, 0.3125 / 0.8125, 0.0]),  # then the nucleus of that: 0.5 < 0.7 <= 0.8125
        (0, 1.0, [0.4, 0.25, 0.15, 0.1, 0.06, 0.04]),  # nothing truncated
    ],
)
def test_top_k_sampling_frequencies_match_the_renormalised_distribution(top_k, top_p, expected):
    probs = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    expected = torch.tensor(expected + [0.0] * (6 - len(expected)))
    n = 20000
    draws = sample_from(probs.log().unsqueeze(0).expand(n, -1), top_k, top_p, torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=6).float()
    support = expected > 0
    assert counts[~support].sum() == 0
    chi2 = (((counts[support] - n * expected[support]) ** 2) / (n * expected[support])).sum().item()
    assert chi2 < 20.5  # chi-square, at most 5 degrees of freedom, p = 0.001


def test_top_p_over_a_large_vocabulary_keeps_the_exact_nucleus():
    """Rows whose nucleus lies beyond the first tokens ranked (a flat distribution) and rows where
    it does not (a peaked one) keep exactly the tokens a full sort would keep (of equal ones, the
    lowest ids first)."""
    torch.manual_seed(0)
    flat = torch.zeros(1, 2000)
    peaked = torch.randn(1, 2000) * 4
    for logits in (flat, peaked, torch.cat([flat, peaked])):
        kept = torch.isfinite(truncate_distribution(logits, top_k=0, top_p=0.9))
        probs, order = logits.softmax(-1).sort(dim=-1, descending=True, stable=True)
        expected = torch.zeros_like(kept).scatter_(-1, order, (probs.cumsum(-1) - probs) < 0.9)
        assert torch.equal(kept, expected)
    assert int(torch.isfinite(truncate_distribution(flat, top_k=0, top_p=0.9)).sum()) == 1800


@pytest.mark.parametrize(
    "bad",
    [
        dict(strategy="beam", beam_size=0),
        dict(strategy="sample", top_p=1.5),
        dict(strategy="sample", temperature=-1.0),
        dict(strategy="beam", n_best=9),
        dict(strategy="greedy", max_length=0),
        dict(strategy="nucleus"),
    ],
)
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ChatbotError):
        settings_from(bad.pop("strategy"), **bad)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    source=st.lists(st.integers(4, 39), min_size=1, max_size=12),
    n=st.integers(1, 3),
    max_length=st.integers(1, 12),
    min_length=st.integers(0, 12),
    strategy=st.sampled_from(["greedy", "beam", "sample"]),
)
def test_blocked_ngrams_never_appear_and_lengths_stay_in_bounds(source, n, max_length, min_length, strategy):
    min_length = min(min_length, max_length)
    model = tiny_model(6, vocab=40)
    s = settings_from(strategy, no_repeat_ngram=n, max_length=max_length, min_length=min_length, seed=1, beam_size=3)
    for hyp in decode(model, [source], s)[0]:
        tokens = hyp.tokens
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        assert len(grams) == len(set(grams))
        assert len(tokens) <= max_length
        assert len(tokens) >= min_length or not hyp.finished


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_unicode_message_gets_a_reply(text, tokenizer):
    model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=8, hidden_size=12)).eval()
    out = reply(model, tokenizer, [text], GreedySettings(max_length=5))
    assert isinstance(out[0][0].text, str)


@settings(max_examples=200, deadline=None)
@given(
    history=st.lists(st.integers(4, 7), max_size=14),
    source=st.lists(st.integers(4, 7), min_size=1, max_size=8),
    n=st.integers(1, 4),
    with_source=st.booleans(),
)
def test_one_row_ngram_blocking_bans_what_the_batched_form_bans(history, source, n, with_source):
    from chatbot.decoding.rules import banned_continuations, block_ngrams

    logp = torch.zeros(1, V)
    block_ngrams(
        logp,
        torch.tensor([history], dtype=torch.long).reshape(1, len(history)),
        n,
        torch.tensor([source]) if with_source else None,
    )
    expected = {i for i in range(V) if logp[0, i] == float("-inf")}
    assert set(banned_continuations(history, n, source if with_source else None)) == expected


@pytest.mark.parametrize(
    "make",
    [
        lambda: GreedySettings(max_length=8, no_repeat_ngram=0, repetition_penalty=1.0),
        lambda: SampleSettings(seed=3, max_length=8, no_repeat_ngram=0, repetition_penalty=1.0),
        lambda: BeamSettings(beam_size=3, max_length=8, no_repeat_ngram=0, repetition_penalty=1.0),
    ],
)
def test_alternatives_are_each_steps_top_five_under_teacher_forcing(make):
    """What the inside view shows: at every reply position, the five most likely pieces and their
    log-probabilities, ranked once at the end (greedy, sampling) or at each step (beam search)."""
    model = tiny_model(6, vocab=40)
    source, settings = [5, 6, 7], make()
    hyp = decode(model, [source], settings)[0][0]
    tokens = hyp.tokens + ([EOS] if hyp.finished else [])
    with torch.no_grad():
        logits, _ = model.scored_logits(
            torch.tensor([source]), torch.tensor([3]), torch.tensor([[BOS] + tokens[:-1]]), torch.tensor([tokens])
        )
    expected = logits.log_softmax(-1)
    expected[:, : BOS + 1] = float("-inf")  # never padding, unknown or start
    expected[0, EOS] = float("-inf")  # nor an empty reply (min_length 1)
    top = expected.topk(5, dim=-1)
    assert len(hyp.alternatives) == len(tokens)
    for step, alternatives in enumerate(hyp.alternatives[: settings.max_length]):  # the last position may only end
        assert [i for i, _ in alternatives] == top.indices[step].tolist()
        assert all(math.isclose(v, e, abs_tol=1e-4) for (_, v), e in zip(alternatives, top.values[step].tolist()))
        assert math.isclose(hyp.logprobs[step], expected[step, tokens[step]].item(), abs_tol=1e-4)


@pytest.mark.parametrize("k", [1, 5, 256, 2000])
def test_largest_ranks_as_topk_does(k):
    """The CPU's numpy ranking gives torch.topk's values in its order, and ids that hold them."""
    from chatbot.decoding.ranking import largest

    torch.manual_seed(k)
    x = torch.cat([torch.randn(3, 2000) * 4, torch.full((1, 2000), float("-inf"))]).log_softmax(-1).nan_to_num(-1e9)
    x[1, :7] = float("-inf")
    values, ids = largest(x, k)
    expected = x.topk(k, dim=-1)
    assert torch.equal(values, expected.values)
    assert torch.equal(x.gather(1, ids), values) and all(len(set(row)) == k for row in ids.tolist())


INSIDE = [False] * 5 + [True, True, False]  # 4 "▁Re" and 7 "▁dog" start words; 5 "x" and 6 "y" go on one


def whole_words_of(table, settings, source, held=None, names=None, marks=None):
    observers = [lambda step: held.append(step.context.whole)] if held is not None else []
    hypotheses = decode(table, [list(source)], settings, observers, inside=INSIDE, names=names, marks=marks)
    return [h.tokens for h in hypotheses[0]]


@pytest.mark.parametrize("kind", [GreedySettings, lambda **kw: BeamSettings(beam_size=2, n_best=1, **kw)])
def test_a_copied_word_is_written_whole_and_not_past_its_end(kind):
    """ "Re x" copied from "Re x y" goes on with "y" where the model would end it; copied from
    "Re x" alone, it is not followed by "x" again; with the rule off, the model's own choices."""
    plain = dict(no_repeat_ngram=0, repetition_penalty=1.0, max_length=4)
    cut = BigramTable({BOS: {4: 0.9, 7: 0.1}, 4: {5: 0.9, EOS: 0.1}, 5: {EOS: 0.8, 6: 0.2}, 6: {EOS: 1.0}})
    assert whole_words_of(cut, kind(whole_words=False, **plain), (4, 5, 6, 7)) == [[4, 5]]
    held = []
    assert whole_words_of(cut, kind(**plain), (4, 5, 6, 7), held) == [[4, 5, 6]]
    if kind is GreedySettings:  # what the walk-through shows: the piece allowed alone, then the word's end
        assert held == [None, None, {0: 6}, {0: None}]
    if kind is not GreedySettings:
        return  # beam search would rather end than stop at the length limit: the rest is greedy's
    stutter = BigramTable({BOS: {4: 0.9, 7: 0.1}, 4: {5: 0.9, EOS: 0.1}, 5: {5: 0.95, EOS: 0.05}})
    plain["max_length"] = 3
    assert whole_words_of(stutter, kind(whole_words=False, **plain), (4, 5, 7)) == [[4, 5, 5]]
    assert whole_words_of(stutter, kind(**plain), (4, 5, 7)) == [[4, 5]]
    assert whole_words_of(stutter, kind(**plain), (7, 7)) == [[4, 5, 5]]  # not a word of the message: left alone


@pytest.mark.parametrize("kind", [GreedySettings, lambda **kw: BeamSettings(beam_size=2, n_best=1, **kw)])
def test_a_copied_name_of_one_piece_takes_no_piece_of_another_word(kind):
    """ "Sam" (4, a name) copied from "Sam Li b on" is not glued to "b" of "Libon" ("Sambon"): a
    name of one piece that ends in the conversation takes none of the conversation's pieces that
    go on a word; a word of one piece that is no name is left to the model."""
    plain = dict(no_repeat_ngram=0, repetition_penalty=1.0, max_length=4)
    glue = BigramTable({BOS: {4: 0.9, 7: 0.1}, 4: {5: 0.95, EOS: 0.05}, 5: {6: 0.9, EOS: 0.1}, 6: {EOS: 1.0}})
    names = [False] * 4 + [True] + [False] * 3
    source = (4, 7, 5, 6)
    glued = whole_words_of(glue, kind(whole_words=False, **plain), source, names=names)
    assert glued[0][:2] == [4, 5]  # "Sam b...": the model's own choice
    assert whole_words_of(glue, kind(**plain), source) == glued  # "Sam" no name: left alone
    held = []
    assert whole_words_of(glue, kind(**plain), source, held, names=names) == [[4]]
    assert {0: None} in held  # the walk-through says where
    assert whole_words_of(glue, kind(**plain), (4, 5, 7), names=names)[0][:2] == [4, 5]  # "Sam b" is in it: left


@pytest.mark.parametrize("kind", [GreedySettings, lambda **kw: BeamSettings(beam_size=2, n_best=1, **kw)])
def test_a_piece_of_another_name_does_not_follow_a_capitalised_piece(kind):
    """ "Li" (4) + "ron" (5) of "To ron" (7 5) is "Liron": after a capitalised piece, a piece of two
    characters or more that goes on a capitalised word of the conversation may follow only what it
    follows there. One letter (6, "s") goes on any word, and a lower-case word is left alone."""
    plain = dict(no_repeat_ngram=0, repetition_penalty=1.0, max_length=3)
    glue = BigramTable({BOS: {4: 0.9, 7: 0.1}, 4: {5: 0.6, 6: 0.3, EOS: 0.1}, 5: {EOS: 1.0}, 6: {EOS: 1.0}})
    names, marks = [False] * 4 + [True, False, False, True], [False] * 5 + [True, False, False]
    off = whole_words_of(glue, kind(whole_words=False, **plain), (7, 5), names=names, marks=marks)
    assert off[0] == [4, 5]  # the model's own choice: "Liron"
    held = []
    assert whole_words_of(glue, kind(**plain), (7, 5), held, names=names, marks=marks)[0] == [4, 6]  # "Lis"
    if kind is GreedySettings:
        assert {0: ("mark", 5)} in held  # the walk-through says which piece was barred
    assert whole_words_of(glue, kind(**plain), (4, 5), names=names, marks=marks)[0] == [4, 5]  # "Liron" said: kept
    lower = [False] * 4 + [True, False, False, False]  # 7 "▁to": "toron" is no name
    assert whole_words_of(glue, kind(**plain), (7, 5), names=lower, marks=marks)[0] == [4, 5]
    assert whole_words_of(glue, kind(**plain), (7, 6), names=names, marks=marks)[0] == [4, 5]  # "s" marks nothing


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), strategy=st.sampled_from(["sample", "beam", "greedy"]))
def test_replies_are_whole_characters_whatever_bytes_a_model_writes(seed, strategy, tokenizer):
    """An untrained model writes byte pieces (256 of the 600) in any order; every reply still reads
    as whole UTF-8 characters, with no control character a terminal would act on."""
    import unicodedata

    from chatbot.decoding import settings_from

    torch.manual_seed(seed)
    model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=8, hidden_size=12)).eval()
    chosen = settings_from(strategy, seed=seed, max_length=30, **({"top_p": 1.0} if strategy == "sample" else {}))
    for hypothesis in reply(model, tokenizer, ["닷 뷁 🦦 hello"], chosen)[0]:
        assert "\ufffd" not in hypothesis.text, hypothesis.tokens
        assert not any(unicodedata.category(ch) == "Cc" for ch in hypothesis.text), hypothesis.text


def test_after_a_lead_byte_only_the_continuations_it_allows_may_follow(tokenizer):
    from chatbot.decoding.rules import Context, WholeCharacters

    values = tokenizer.byte_values()
    piece = {v: i for i, v in enumerate(values) if v >= 0}  # byte -> piece id
    rule, V = WholeCharacters(values), tokenizer.vocab_size

    def after(*written):
        logp = torch.log_softmax(torch.randn(1, V), -1)
        ctx = Context(step=len(written), source=torch.zeros(1, 1, dtype=torch.long), history=None, reply=list(written))
        return logp.clone(), rule(logp, ctx)[0]

    before, allowed = after(piece[0xEB])  # a lead of three bytes: any of 80-BF next
    finite = torch.isfinite(allowed).nonzero().flatten().tolist()
    assert sorted(values[i] for i in finite) == list(range(0x80, 0xC0))
    assert torch.equal(allowed[finite], before[0, finite])  # the model's own odds among them
    _, allowed = after(piece[0xE0])  # E0: A0-BF only (no overlong form)
    assert sorted(values[i] for i in torch.isfinite(allowed).nonzero().flatten().tolist()) == list(range(0xA0, 0xC0))
    _, allowed = after(piece[0xEB], piece[0x8B], piece[0xB7])  # "닷" finished: no continuation, the end allowed
    assert not torch.isfinite(allowed[[piece[b] for b in range(0x80, 0xC0)]]).any() and torch.isfinite(allowed[EOS])
    never = set(tokenizer.never_written())
    assert {piece[0x1B], piece[0x07], piece[0xFF], piece[0xC0]} <= never and piece[ord("a")] not in never
