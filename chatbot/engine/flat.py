"""The flat engine: `Seq2Seq.step`'s arithmetic as one closure, without the Python around it.

A reply runs the decoder step once per token, and for one message on the CPU the step is a few
hundred microseconds of small tensor operations: a quarter of that went to Python around them
(nn.Module calls, attribute look-ups, checks for training), and PyTorch's fused LSTM kernel
costs more to set up for one time step than the step itself. `step_function` reads the weights
once and returns a closure that does the arithmetic and nothing else; the LSTM steps through
`torch.lstm_cell`, two products per layer. Measurements: `docs/performance.md`.

The int8 engine (`chatbot.engine.int8`) builds the same closure from int8 parts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from chatbot.engine.reference import ModelEngine
from chatbot.model import LowRankLinear, Memory, Seq2Seq, State

Step = Callable[[torch.Tensor, State, Memory, torch.Tensor], tuple[torch.Tensor, State, torch.Tensor, torch.Tensor]]


def product(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> layer(x) for a linear layer (or a low-rank pair, or anything with `.product`), as a
    bare function of x."""
    if hasattr(layer, "product"):
        return layer.product
    if isinstance(layer, LowRankLinear):
        down, up = product(layer.down), product(layer.up)
        return lambda x: up(down(x))
    linear, weight, bias = torch.nn.functional.linear, layer.weight, layer.bias
    return lambda x: linear(x, weight, bias)


def lstm_step(lstm: nn.LSTM, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """One time step of a multi-layer LSTM (no dropout: inference only): x (B, E) -> output
    (B, H), new state (L, B, H) each. The same weights and result as `lstm(x.unsqueeze(1), state)`,
    through `torch.lstm_cell` per layer."""
    h, c = state  # (L, B, H)
    inputs, hs, cs = x, [], []
    for layer in range(lstm.num_layers):
        weights = [getattr(lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h_layer, c_layer = torch.lstm_cell(inputs, (h[layer], c[layer]), *weights)  # (B, H) each
        hs.append(h_layer)
        cs.append(c_layer)
        inputs = h_layer
    return inputs, (torch.stack(hs), torch.stack(cs))


def shared(memory: Memory, h: torch.Tensor) -> bool:
    """Whether every row reads one message's memory (B = 1, the rows many: `ModelEngine.shares_memory`)."""
    return memory.keys.size(0) == 1 < h.size(0)


def attention_function(model: Seq2Seq) -> Callable[[torch.Tensor, Memory], torch.Tensor]:
    """(h (B, H), memory) -> attention weights (B, 1, S): `Attention.forward`'s weights for one token."""
    attention, dtype = model.decoder.attention, model.embedding.weight.dtype
    baddbmm, softmax, tanh, fp32 = torch.baddbmm, torch.softmax, torch.tanh, torch.float32
    if attention.kind == "additive":
        query, v = product(attention.query), product(attention.v)

        def additive(h, memory):
            scores = v(tanh(query(h).unsqueeze(1) + memory.keys)).transpose(1, 2) + memory.bias.to(dtype)  # (B, 1, S)
            return softmax(scores, -1, dtype=fp32).to(dtype)

        return additive

    def multiplicative(h, memory):
        bias = memory.bias if memory.bias.dtype == dtype else memory.bias.to(dtype)
        if shared(memory, h):  # (B, H) @ (H, S): one product, not B small ones over B copies
            scores = torch.addmm(bias[0], h, memory.keys[0].T).unsqueeze(1)  # (B, 1, S)
        else:
            scores = baddbmm(bias, h.unsqueeze(1), memory.keys.transpose(1, 2))  # (B, 1, S)
        weights = softmax(scores, -1, dtype=fp32)
        return weights if weights.dtype == dtype else weights.to(dtype)

    return multiplicative


def copy_function(model: Seq2Seq):
    """`Copy.forward`'s arithmetic in place, for decoding (no gradient to keep): each operation
    writes over the vocabulary-wide tensor the one before made, instead of allocating its own.
    None for a model without copy attention."""
    if model.copy is None:
        return None
    share, fp32 = model.copy.generate_share, torch.float32

    def copy(logits, attentional, weights, tokens):
        g = share(attentional)  # (B, 1)
        mixed = torch.softmax(logits, dim=-1, dtype=fp32).mul_(g)  # (B, V)
        tokens = tokens.expand(len(weights), -1)  # (B, S); one message's pieces for every row, if shared
        return mixed.scatter_add_(1, tokens, weights.float() * (1 - g)).clamp_min_(1e-30).log_()

    return copy


def step_function(model: Seq2Seq, cell, from_tokens: bool, attentional_state, out) -> Step:
    """The one-token step from its parts: `cell` (inputs, state) -> h (B, H), new state, whose
    inputs are the tokens when `from_tokens` (their input products looked up by token) or their
    embeddings; `attentional_state` (weights (B, 1, S), h, memory) -> (B, A); `out` (B, A) ->
    logits (B, V)."""
    embedding, embeddings, cat = torch.embedding, model.embedding.weight, torch.cat
    attend, input_feeding, copy = attention_function(model), model.cfg.input_feeding, copy_function(model)

    def step(tokens, state, memory, feed):
        if from_tokens:
            h, state = cell(tokens, state)  # (B, H)
        else:
            x = embedding(embeddings, tokens)  # (B, E)
            h, state = cell(cat([x, feed], 1) if input_feeding else x, state)
        weights = attend(h, memory)  # (B, 1, S)
        attentional = attentional_state(weights, h, memory)  # (B, A)
        logits = out(attentional)  # (B, V)
        if copy is not None:  # log p of the mixture with the source's pieces (`chatbot.model.Copy`)
            logits = copy(logits, attentional, weights[:, 0], memory.tokens)
        return logits, state, weights[:, 0], attentional

    return step


class FlatEngine(ModelEngine):
    """The model's float weights (fp32 or bf16) through one flat step function."""

    shares_memory = True

    def __init__(self, model: Seq2Seq):
        super().__init__(model)
        decoder = model.decoder
        combine, bmm, cat, tanh, lstm = product(decoder.combine), torch.bmm, torch.cat, torch.tanh, decoder.lstm

        def attentional_state(weights, h, memory):
            if shared(memory, h):
                context = weights[:, 0] @ memory.states[0]  # (B, H)
            else:
                context = bmm(weights, memory.states)[:, 0]  # (B, H)
            return tanh(combine(cat([context, h], 1)))  # (B, A)

        self.step = step_function(
            model, lambda x, state: lstm_step(lstm, x, state), False, attentional_state, product(model.out)
        )
