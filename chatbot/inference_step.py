"""The decoder's one-token step for decoding, as one flat function.

A reply runs the step once per token, and for one message on the CPU the step is a few hundred
microseconds of small tensor operations: a quarter of that went to Python around them (seven
nn.Module calls, attribute look-ups, checks for training). `step_function(model)` reads the
weights once and returns a closure that does the arithmetic of `Seq2Seq.step` and nothing else
(measured on the bundled int8 model, 2 threads: 418 against 318 us a step).

It returns logits; the decoding loop (`chatbot.decoding`) normalises them. With int8 weights
the first LSTM layer reads its input products from a table by token (`chatbot.int8.Int8LSTMStep`)
and the attentional layer's context half comes made in the memory (`memory_function`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from chatbot.int8 import Int8Combine, Int8Linear, Int8LSTMStep
from chatbot.model import LowRankLinear, Memory, Seq2Seq, State, lstm_step

Step = Callable[[torch.Tensor, State, Memory, torch.Tensor], tuple[torch.Tensor, State, torch.Tensor, torch.Tensor]]


def product(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> layer(x) for a linear layer of any kind, as a bare function of x."""
    if isinstance(layer, Int8Linear):
        return layer.product
    if isinstance(layer, LowRankLinear):
        down, up = product(layer.down), product(layer.up)
        return lambda x: up(down(x))
    linear, weight, bias = torch.nn.functional.linear, layer.weight, layer.bias
    return lambda x: linear(x, weight, bias)


def step_function(model: Seq2Seq) -> Step:
    """(tokens (B,), state, memory, feed (B, A)) -> logits (B, V), state, attention (B, S),
    attentional state (B, A): `Seq2Seq.step` without log_softmax, for a model in eval mode.
    Additive attention and training keep the model's own step."""
    if model.training or model.cfg.attention == "additive":
        return lambda tokens, state, memory, feed: _logits_step(model, tokens, state, memory, feed)
    embedding, embeddings = torch.embedding, model.embedding.weight
    decoder = model.decoder
    from_tokens = isinstance(decoder.cell, Int8LSTMStep) and decoder.cell.table is not None  # its first layer looks tokens up
    if isinstance(decoder.cell, Int8LSTMStep):
        cell = decoder.cell.step_function(from_tokens)
    else:
        cell = functools.partial(lstm_step, decoder.lstm)  # PyTorch's one-step lstm_cell per layer
    out = product(model.out)
    baddbmm, softmax, bmm, cat, tanh, fp32 = torch.baddbmm, torch.softmax, torch.bmm, torch.cat, torch.tanh, torch.float32
    dtype, input_feeding = embeddings.dtype, model.cfg.input_feeding
    if isinstance(decoder.combine, Int8Combine):  # W_c context = weights (states W_c^T), the latter in memory.values
        combine_state = decoder.combine.state.product

        def attentional_state(weights, h, memory):
            return tanh(baddbmm(combine_state(h).unsqueeze(1), weights, memory.values)[:, 0])  # (B, A)
    else:
        combine = product(decoder.combine)

        def attentional_state(weights, h, memory):
            context = bmm(weights, memory.states)  # (B, 1, H)
            return tanh(combine(cat([context[:, 0], h], 1)))  # (B, A)

    def step(tokens, state, memory, feed):
        if from_tokens:
            h, state = cell(tokens, state)  # (B, H)
        else:
            x = embedding(embeddings, tokens)  # (B, E)
            h, state = cell(cat([x, feed], 1) if input_feeding else x, state)
        bias = memory.bias if memory.bias.dtype == dtype else memory.bias.to(dtype)
        weights = softmax(baddbmm(bias, h.unsqueeze(1), memory.keys.transpose(1, 2)), -1, dtype=fp32)  # (B, 1, S)
        if weights.dtype != dtype:
            weights = weights.to(dtype)
        attentional = attentional_state(weights, h, memory)  # (B, A)
        return out(attentional), state, weights[:, 0], attentional

    return step


def memory_function(model: Seq2Seq) -> Callable[[Memory], Memory]:
    """Memory -> the memory `step_function` reads: with an int8 attentional layer
    (`chatbot.int8.Int8Combine`), its context half applied to every encoder state, once per
    message (before beam search repeats the memory for each hypothesis)."""
    combine = model.decoder.combine
    if model.training or model.cfg.attention == "additive" or not isinstance(combine, Int8Combine):
        return lambda memory: memory
    context = combine.context.product
    return lambda memory: memory._replace(values=context(memory.states))  # (B, S, A)


def _logits_step(model: Seq2Seq, tokens, state, memory, feed):
    x = model.embed(tokens)
    attentional, state, weights = model.decoder.step(x, state, memory, feed)
    return model.out(attentional), state, weights, attentional
