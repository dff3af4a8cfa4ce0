"""Every engine against the reference model (`chatbot/model.py`): the same step, for every
attention kind and shape of model; the same replies."""

from __future__ import annotations

import pytest
import torch

from chatbot.decoding import GreedySettings, prepare, reply
from chatbot.engine import FlatEngine, ReferenceEngine
from chatbot.engine.int8 import Int8Engine
from chatbot.model import ModelConfig, Seq2Seq, greedy_reply
from chatbot.tokenizer import BOS

VARIANTS = [
    dict(attention="dot"),
    dict(attention="general"),
    dict(attention="additive"),
    dict(attention="general", input_feeding=True),
    dict(attention="dot", layers=2),
    dict(attention="general", output_rank=12),
    dict(attention="additive", tie_embeddings=True, embedding_dim=32),
    dict(attention="general", output_rank=12, copy_attention=True),
    dict(attention="dot", input_feeding=True, copy_attention=True),
]
INT8_TOLERANCE = 0.05  # on log-probabilities: activations are rounded to 7 bits per row, weights to 8


def random_model(**settings) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = dict(vocab_size=50, embedding_dim=24, hidden_size=32, dropout=0.0) | settings
    model = Seq2Seq(ModelConfig(**cfg)).eval()
    with torch.no_grad():  # weights of a trained size, so that differences would show
        for p in model.parameters():
            p.mul_(4)
    return model


def steps(engine, src, lengths, tokens):
    """Logits, attention and state of each step, fed `tokens` (B, T) in turn."""
    memory, state = engine.encode(src, lengths)
    feed, out = engine.initial_feed(src.size(0)), []
    with torch.inference_mode():
        for t in range(tokens.size(1)):
            logits, state, weights, feed = engine.step(tokens[:, t], state, memory, feed)
            out.append((logits.log_softmax(-1), weights, state[0], state[1]))
    return out


@pytest.mark.parametrize("settings", VARIANTS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("kind", ["flat", "int8"])
def test_every_engine_steps_as_the_reference_does(settings, kind):
    model = random_model(**settings)
    src, lengths = torch.tensor([[5, 9, 13, 7, 8], [6, 11, 4, 0, 0]]), torch.tensor([5, 3])  # a padded batch
    tokens = torch.tensor([[BOS, 12, 30, 4, 41, 7], [BOS, 9, 9, 22, 5, 16]])
    with torch.inference_mode():
        expected = steps(ReferenceEngine(model), src, lengths, tokens)
        got = steps(FlatEngine(model) if kind == "flat" else Int8Engine(model), src, lengths, tokens)
    for (logp, weights, h, c), (logp2, weights2, h2, c2) in zip(expected, got):
        if kind == "flat":  # the same float arithmetic, through other kernels: equal to float rounding
            for a, b in ((logp, logp2), (weights, weights2), (h, h2), (c, c2)):
                assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a - b).abs().max()
        else:
            assert (logp - logp2).abs().max() < INT8_TOLERANCE and (weights - weights2).abs().max() < INT8_TOLERANCE
        assert torch.equal(weights2[1, 3:], torch.zeros(2))  # padding never attended to
        assert torch.allclose(weights2.sum(-1), torch.ones(2), atol=1e-6)


def test_the_engines_leave_the_model_as_it_was():
    model = random_model(attention="general", output_rank=12)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    FlatEngine(model), Int8Engine(model).scorer
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_greedy_replies_with_and_without_reference_are_the_same(sample_pairs):
    """The bundled model in fp32: the flat engine and the model's own modules reply alike to 50
    chitchat test messages, and the model's own `greedy_reply` is greedy decoding without rules."""
    from chatbot.engine import load_engine
    from chatbot.paths import BUNDLED_MODEL
    from corpora import load_pairs

    messages = [p.source for p in load_pairs("chitchat", "test")[:50]]
    flat, tokenizer, _ = load_engine(BUNDLED_MODEL, precision="fp32")
    reference, _, _ = load_engine(BUNDLED_MODEL, precision="fp32", reference=True)
    assert isinstance(flat, FlatEngine) and isinstance(reference, ReferenceEngine)
    settings = GreedySettings()
    assert [r[0].text for r in reply(flat, tokenizer, messages, settings)] == [
        r[0].text for r in reply(reference, tokenizer, messages, settings)
    ]
    bare = GreedySettings(no_repeat_ngram=0, repetition_penalty=1.0, guidance=0.0)  # greedy_reply: no rules
    for message in messages[:10]:
        source, _ = prepare(tokenizer, flat, message)  # the message with its speaker's mark, as replies read it
        expected = reply(reference, tokenizer, [message], bare)[0][0]
        tokens, attention = greedy_reply(reference.model, source, bare.max_length)
        assert tokens == expected.tokens and len(attention) == len(tokens)


def test_reference_replies_in_the_chat_session_and_the_command_line(overfit_dir, sample_pairs, tmp_path, capsys):
    from chatbot.cli import main
    from chatbot.session import open_session

    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None, load=False)
    session.reference = True
    session.load("cpu", "auto", 1)
    assert isinstance(session.model, ReferenceEngine) and session.precision == "fp32"
    assert session.respond(sample_pairs[0].source).reply.text == sample_pairs[0].reply
    session.storage.close()
    assert (
        main(["reply", "--model", str(overfit_dir), "--reference", "--strategy", "greedy", sample_pairs[0].source]) == 0
    )
    assert capsys.readouterr().out.strip() == sample_pairs[0].reply
    assert main(["reply", "--model", str(overfit_dir), "--reference", "--precision", "int8", "hi"]) == 1
    assert "--reference runs the model's own float modules" in capsys.readouterr().err


@pytest.mark.parametrize("settings", VARIANTS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("kind", ["flat", "int8"])
def test_rows_of_one_message_read_its_one_memory_as_they_would_their_own_copies(settings, kind):
    """Sampling's and beam search's rows of one message share its memory (`shares_memory`):
    each step is what it is when every row has a copy."""
    model = random_model(**settings)
    engine = FlatEngine(model) if kind == "flat" else Int8Engine(model)
    assert engine.shares_memory and not ReferenceEngine(model).shares_memory
    src, lengths = torch.tensor([[5, 9, 13, 7, 8]]), torch.tensor([5])
    tokens = torch.tensor([[BOS, 12, 30], [BOS, 9, 9], [BOS, 22, 5], [BOS, 41, 7]])  # four rows
    with torch.inference_mode():
        memory, state = engine.encode(src, lengths)
        rows = torch.zeros(4, dtype=torch.long)
        copies, state = memory.index_select(rows), tuple(s.index_select(1, rows) for s in state)
        feed_a = feed_b = engine.initial_feed(4)
        state_a = state_b = state
        for t in range(tokens.size(1)):
            a = engine.step(tokens[:, t], state_a, memory, feed_a)
            b = engine.step(tokens[:, t], state_b, copies, feed_b)
            assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[2], b[2], atol=1e-6)
            (_, state_a, _, feed_a), (_, state_b, _, feed_b) = a, b
