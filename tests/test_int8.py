"""Int8 decoder weights: the same arithmetic on every path, and the replies a model learned."""

from __future__ import annotations

import pytest
import torch

from chatbot.device import inference_precision
from chatbot.engine.int8 import Int8Encoder, Int8Engine, Int8Linear, Int8LSTMStep, int8_rows, round_to_int8
from chatbot.errors import ChatbotError
from chatbot.modeldir import load_model
from chatbot.tokenizer import BOS, EOS


def test_rows_round_to_within_half_a_step():
    torch.manual_seed(0)
    weight = torch.randn(40, 24) * torch.linspace(0.01, 3, 40).unsqueeze(1)  # rows of very different size
    q, scales = int8_rows(weight)
    assert q.dtype == torch.int8 and q.abs().amax(dim=1).eq(127).all()
    assert ((q.float() * scales.unsqueeze(1) - weight).abs() <= scales.unsqueeze(1) / 2 + 1e-7).all()


def test_linear_is_a_float_product_with_the_rounded_weights_up_to_activation_rounding():
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 40)
    int8 = Int8Linear(linear.weight, linear.bias)
    with torch.no_grad():
        round_to_int8(linear.weight)
    x = torch.randn(2, 3, 24)
    # 7-bit activations: each input off by at most half a step of max|x| / 127
    bound = (x.abs().max() / 127 / 2) * linear.weight.abs().sum(dim=1)
    assert ((int8(x) - linear(x)).abs() <= bound + 1e-5).all()


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_step_is_the_fused_lstm_with_the_rounded_weights(layers):
    """Recurrent products in int8, input products in fp32; from tokens, the first layer's input
    products come from a table, which gives the same step as embedding them first."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(8, 12, num_layers=layers, batch_first=True)
    embedding = torch.randn(20, 8)
    with torch.no_grad():
        for n in range(layers):
            round_to_int8(getattr(lstm, f"weight_hh_l{n}"))
    step = Int8LSTMStep(lstm, embedding)
    tokens, state = torch.tensor([3, 19, 0]), (torch.randn(layers, 3, 12), torch.randn(layers, 3, 12))
    expected, (h, c) = lstm(embedding[tokens].unsqueeze(1), state)
    for got, (h2, c2) in (step(embedding[tokens], state), step.step_function(from_tokens=True)(tokens, state)):
        assert (
            torch.allclose(expected[:, 0], got, atol=0.02)
            and torch.allclose(h, h2, atol=0.02)
            and torch.allclose(c, c2, atol=0.02)
        )
    with_table, embedded = step.step_function(from_tokens=True)(tokens, state), step(embedding[tokens], state)
    assert torch.allclose(with_table[0], embedded[0], atol=1e-5)


@pytest.mark.parametrize("layers", [1, 2])
@torch.inference_mode()
def test_encoder_is_the_float_encoder_up_to_int8_rounding(layers):
    """Both directions stepped together give each direction's states, on a padded batch too."""
    from chatbot.model import Encoder, ModelConfig

    torch.manual_seed(0)
    encoder = Encoder(ModelConfig(vocab_size=30, embedding_dim=8, hidden_size=12, layers=layers)).eval()
    x, lengths = torch.randn(3, 5, 8), torch.tensor([5, 2, 4])
    (expected, expected_final), (got, final) = encoder(x, lengths), Int8Encoder(encoder)(x, lengths)
    real = (torch.arange(5).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)  # padding positions hold anything
    assert torch.allclose(expected * real, got * real, atol=0.03) and torch.allclose(expected_final, final, atol=0.03)
    one, one_final = Int8Encoder(encoder)(x[1:2, :2], lengths[1:2])  # alone, no padding (activations round per batch)
    assert torch.allclose(one, got[1:2, :2], atol=0.01) and torch.allclose(one_final, final[:, 1:2], atol=0.01)
    table = torch.randn(30, 8)  # token ids in: the first layer's input products looked up, as from the embedded tokens
    src = torch.tensor([[3, 29, 7, 0, 0], [5, 5, 1, 2, 9]])
    embed = lambda ids: torch.embedding(table, ids)  # noqa: E731
    looked_up, from_embedded = (
        Int8Encoder(encoder, table).read(src, torch.tensor([3, 5]), embed),
        Int8Encoder(encoder)(embed(src), torch.tensor([3, 5])),
    )
    assert all(torch.allclose(a, b, atol=0.01) for a, b in zip(looked_up, from_embedded))


@pytest.mark.parametrize("output_rank", [0, 16])
@pytest.mark.parametrize("copy_attention", [False, True])
@torch.inference_mode()
def test_decoding_steps_score_what_teacher_forcing_scores(random_model, output_rank, copy_attention):
    """Perplexity measured on the int8 engine's scorer (teacher forcing, whole replies at once)
    is, up to activation rounding, the perplexity of the engine that decodes (one int8 step at a
    time), and the engine leaves the float model as it was."""
    if output_rank or copy_attention:
        random_model = random_model.with_settings(output_rank=output_rank, copy_attention=copy_attention)
    before = {k: v.clone() for k, v in random_model.state_dict().items()}
    engine = Int8Engine(random_model)
    scorer = engine.scorer
    assert all(isinstance(m, Int8Linear) for m in ((scorer.out.down, scorer.out.up) if output_rank else (scorer.out,)))
    src, reply = torch.tensor([[5, 9, 13, 7]]), [BOS, 11, 4, 20, 8]
    logits, _ = scorer.scored_logits(src, torch.tensor([4]), torch.tensor([reply]), torch.tensor([reply[1:] + [EOS]]))
    memory, state = engine.encode(src, torch.tensor([4]))
    feed = engine.initial_feed(1)
    for t, token in enumerate(reply):
        step_logits, state, _, feed = engine.step(torch.tensor([token]), state, memory, feed)
        assert torch.allclose(step_logits[0].log_softmax(-1), logits[t].log_softmax(-1), atol=0.02)
    assert all(torch.equal(before[k], v) for k, v in random_model.state_dict().items())


def test_int8_model_keeps_what_it_memorised(overfit_dir, sample_pairs):
    from chatbot.decoding import GreedySettings, reply
    from chatbot.engine import load_engine
    from training.evaluate import evaluate_pairs

    fp32, tokenizer, _ = load_model(overfit_dir)
    int8, _, _ = load_engine(overfit_dir, precision="int8")
    assert isinstance(int8, Int8Engine) and int8.scorer.out.weight.dtype == torch.int8
    messages = [p.source for p in sample_pairs[:8]]
    assert [r[0].text for r in reply(int8, tokenizer, messages, GreedySettings())] == [
        p.reply for p in sample_pairs[:8]
    ]
    with torch.inference_mode():
        before, after = (evaluate_pairs(m, tokenizer, sample_pairs[:30])["word_ppl"] for m in (fp32, int8.scorer))
    assert abs(after / before - 1) < 0.02


def test_auto_is_int8_on_the_cpu_and_int8_is_refused_on_cuda():
    assert inference_precision("auto", torch.device("cpu")) == "int8"
    assert inference_precision("auto", torch.device("cuda")) == "fp32"
    with pytest.raises(ChatbotError, match="CPU only"):
        inference_precision("int8", torch.device("cuda"))
