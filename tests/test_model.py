import pytest
import torch
import torch.nn.functional as F

from chatbot.model import ATTENTION_KINDS, ModelConfig, Seq2Seq
from chatbot.tokenizer import BOS
from training.data import collate, encode_pairs


def per_example_loss(model, examples):
    batch = collate(examples)
    attentional, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
    logits = model.out(attentional)  # (B, T, V)
    nll = F.cross_entropy(logits.transpose(1, 2), batch.tgt_out, reduction="none", ignore_index=0)  # (B, T)
    return nll.sum(1)


@pytest.mark.parametrize("attention", ATTENTION_KINDS)
@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_padding_never_changes_a_result(tokenizer, sample_pairs, attention, input_feeding, layers):
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_dim=24,
        hidden_size=32,
        layers=layers,
        attention=attention,
        input_feeding=input_feeding,
    )
    model = Seq2Seq(cfg).eval()
    examples = encode_pairs(sample_pairs[:7], tokenizer, 64, 48)
    together = per_example_loss(model, examples)
    alone = torch.cat([per_example_loss(model, [e]) for e in examples])
    assert torch.allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("attention", ATTENTION_KINDS)
def test_attention_sums_to_one_and_is_zero_on_padding(tokenizer, sample_pairs, attention):
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=24, hidden_size=32, attention=attention)
    model = Seq2Seq(cfg).eval()
    batch = collate(encode_pairs(sample_pairs[:5], tokenizer, 64, 48))
    _, weights = model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, S)
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:2]), atol=1e-6)
    for i, n in enumerate(batch.src_lengths.tolist()):
        assert (weights[i, :, n:] == 0).all()
        assert (weights[i, :, :n] > 0).all()


def test_teacher_forcing_below_one_trains_stepwise(tokenizer, sample_pairs):
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=24, hidden_size=32, teacher_forcing=0.5)
    model = Seq2Seq(cfg).train()
    batch = collate(encode_pairs(sample_pairs[:4], tokenizer, 64, 48))
    logits, targets = model.scored_logits(*batch)
    F.cross_entropy(logits, targets).backward()
    assert logits.shape == (targets.numel(), tokenizer.vocab_size)


def test_tied_embeddings_share_one_matrix(tokenizer):
    model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=24, hidden_size=32, tie_embeddings=True))
    assert model.out.weight is model.embedding.weight


@pytest.mark.parametrize("layers", [1, 2])
def test_single_step_fast_path_matches_the_fused_lstm(tokenizer, layers):
    from chatbot.engine.flat import lstm_step

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(8, 12, num_layers=layers, batch_first=True).eval()
    x = torch.randn(3, 1, 8)
    state = (torch.randn(layers, 3, 12), torch.randn(layers, 3, 12))
    expected, (h, c) = lstm(x, state)
    got, (h2, c2) = lstm_step(lstm, x[:, 0], state)
    assert (
        torch.allclose(expected[:, 0], got, atol=1e-6)
        and torch.allclose(h, h2, atol=1e-6)
        and torch.allclose(c, c2, atol=1e-6)
    )


def test_low_rank_output_layer_is_the_best_approximation_of_the_full_one():
    from chatbot.model import LowRankLinear

    torch.manual_seed(0)
    full = torch.nn.Linear(24, 40)
    x = torch.randn(5, 24)
    whole = LowRankLinear(24, 40, rank=24)
    whole.copy_best_approximation(full.weight, full.bias)
    assert torch.allclose(whole(x), full(x), atol=1e-5)
    thin = LowRankLinear(24, 40, rank=6)
    thin.copy_best_approximation(full.weight, full.bias)
    singular = torch.linalg.svdvals(full.weight.detach())
    error = torch.linalg.matrix_norm(full.weight - thin.up.weight @ thin.down.weight) ** 2
    assert torch.isclose(error, (singular[6:] ** 2).sum(), rtol=1e-4)  # Eckart-Young: what is left is the tail


def test_starting_from_a_model_keeps_everything_but_the_output_layer_exactly(random_model, tokenizer, sample_pairs):
    from dataclasses import replace

    batch = collate(encode_pairs(sample_pairs[:4], tokenizer, 64, 48))
    before, _ = random_model.scored_logits(*batch)
    hidden = random_model.cfg.hidden_size
    for rank in (hidden, 8):  # full rank: the same function; lower: the same model but its output layer
        thin = random_model.with_settings(output_rank=rank)
        after, _ = thin.scored_logits(*batch)
        if rank == hidden:
            assert torch.allclose(before, after, atol=1e-4)
        for name, tensor in random_model.state_dict().items():
            if not name.startswith("out."):
                assert torch.equal(thin.state_dict()[name], tensor), name
        back = thin.with_settings(output_rank=0)  # low rank to full: the product of the two factors
        assert torch.allclose(back.out.weight, thin.out.up.weight @ thin.out.down.weight)
    with pytest.raises(Exception, match="only the output layer"):
        Seq2Seq(replace(random_model.cfg, hidden_size=32)).initialize_from(random_model)


def test_copy_attention_writes_back_a_source_piece_the_softmax_never_would(random_model, tokenizer, sample_pairs):
    """The mixture is a distribution (it sums to 1); a piece of the message gets at least its
    attention weight times the copy share, however unlikely the softmax makes it; and a model
    that gains a copy gate keeps every other weight."""
    model = random_model.with_settings(copy_attention=True).eval()
    for name, tensor in random_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    batch = collate(encode_pairs(sample_pairs[:4], tokenizer, 64, 48))
    with torch.no_grad():
        logp, _ = model.scored_logits(*batch)
        assert torch.allclose(logp.exp().sum(-1), torch.ones(len(logp)), atol=1e-5)
        rare = batch.src[0, 1].item()  # a piece of the first message
        model.out.bias[rare] = -1e4  # the softmax alone gives it nothing
        memory, state = model.encode(batch.src[:1], batch.src_lengths[:1])
        logits, _, weights, feed = model.step(torch.tensor([BOS]), state, memory, model.initial_feed(1))
        copied = (1 - model.copy.generate_share(feed)) * weights[0, batch.src[0] == rare].sum()
    assert logits[0, rare].exp() >= copied * 0.999 > 0
