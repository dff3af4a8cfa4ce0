"""The int8 engine: int8 weights in the big products, for replies on the CPU.

A reply is made one token at a time, and each token reads the decoder's big weight matrices
once (the LSTM's, the attentional layer's and the output layer's) to compute a single row: the
step is bound by memory traffic, not arithmetic. As int8 with one scale per output row they are
a quarter of fp32's bytes, and fbgemm's dynamically quantised product (activations quantised
per call) runs them several times faster than fp32 (`docs/performance.md`).

`Int8Engine(model)` builds int8 twins of the model's layers and leaves the model as it is:
`Int8Linear` products, the encoder as `Int8Encoder`, the attentional layer as `Int8Combine`, the
decoder LSTM as `Int8LSTMStep`. The LSTMs' input products stay fp32, looked up by token where
the inputs are embeddings. Its `scorer` is a copy of the model with those layers swapped in
(`quantize`), whose teacher-forced perplexity is that of the weights decoding uses (activations
are quantised per batch there rather than per row, so close to, not identical with, what
decoding computes).
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from chatbot.engine.flat import shared, step_function
from chatbot.engine.reference import ModelEngine
from chatbot.errors import ChatbotError
from chatbot.model import LowRankLinear, Seq2Seq, gather_rows, reversal_index


def require_cpu(device: torch.device | str) -> None:
    """fbgemm's kernels are CPU kernels: int8 weights elsewhere are a clear error, not a crash."""
    if torch.device(device).type != "cpu":
        raise ChatbotError("int8 weights run on the CPU only: use --precision fp32 or bf16 on CUDA")


def available() -> bool:
    """Whether this torch has fbgemm's dynamically quantised linear product."""
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(torch.ops.quantized, "linear_dynamic")


def int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight (N, K) -> int8 (N, K) and fp32 scales (N,) with weight ~= int8 * scale per row."""
    scales = weight.float().abs().amax(dim=1).clamp(min=1e-12) / 127
    return torch.round(weight.float() / scales.unsqueeze(1)).clamp(-127, 127).to(torch.int8), scales


class Int8Linear(nn.Module):
    """y = x W^T + b with W held as int8 rows and their scales, packed for fbgemm."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        q, scales = int8_rows(weight)
        with warnings.catch_warnings():  # quantised tensors are deprecated in later torch releases; 2.13 has them
            warnings.simplefilter("ignore")
            qweight = torch._make_per_channel_quantized_tensor(
                q, scales.double(), torch.zeros_like(scales, dtype=torch.long), 0
            )
        self.packed = torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.detach().float())
        self.weight = q  # for inspection: the int8 values
        self.out_features = q.size(0)
        op, packed = linear_dynamic(), self.packed
        # the product as a bare function of x, for decoding's flat step; reduce_range True: 7-bit
        # activations, so products cannot saturate on CPUs without VNNI
        self.product = lambda x: (
            op(x, packed, True) if x.dtype == torch.float32 else op(x.float(), packed, True).to(x.dtype)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.product(x)


@functools.cache
def linear_dynamic():
    """fbgemm's product as the bare C++ function: torch.ops' Python wrapper inspects every argument
    of an op that takes a packed weight, which costs about as much as a small product itself."""
    return torch.ops.quantized.linear_dynamic.default._op


def doubled_cell_gate(t: torch.Tensor) -> torch.Tensor:
    """An LSTM's weights or bias (4H rows, PyTorch's gate order: input, forget, cell, output) with
    the cell gate's rows doubled, for `lstm_update`."""
    H = t.size(0) // 4
    scale = torch.ones(4 * H, *[1] * (t.dim() - 1))
    scale[2 * H : 3 * H] = 2.0
    return t.detach().float() * scale


def lstm_update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An LSTM's new (h, c) from its gates' pre-activations (..., 4H), computed with the cell
    gate's rows doubled: one sigmoid then gives all four gates, since tanh(g) = 2 sigmoid(2g) - 1,
    and a step takes a third fewer tensor operations, which is what a one-row step pays for. The
    doubled rows are the same weights to the bit in int8 (each row times twice its scale).
    Overwrites `gates`."""
    i, f, g, o = gates.sigmoid_().chunk(4, dim=-1)
    c = torch.addcmul(f * c, i, g, value=2).sub_(i)  # f c + i (2 sigmoid(2g) - 1)
    return o * torch.tanh(c), c


class Int8LSTMStep(nn.Module):
    """One time step of an LSTM for decoding: per layer, the recurrent product in int8 and the
    input product in fp32, then the gates (PyTorch's order: input, forget, cell, output).

    A step is bound by the bytes of weights it reads. The first layer's inputs are embedding
    rows, so with `embedding` given its input product is read from a table of every vocabulary
    entry's, made once ((V, 4H) fp32): the step then reads the int8 recurrent matrix alone, two
    thirds of the bytes of both. The table is `step_function(from_tokens=True)`'s; `forward` takes
    embedded inputs.
    The gates are `lstm_update`'s, so the cell gate's rows are stored doubled.
    """

    def __init__(self, lstm: nn.LSTM, embedding: torch.Tensor | None = None):
        super().__init__()
        weights = [
            [
                doubled_cell_gate(getattr(lstm, f"{name}_l{n}"))
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            for n in range(lstm.num_layers)
        ]
        self.recurrent = nn.ModuleList(Int8Linear(w_hh, None) for _, w_hh, _, _ in weights)
        self.inputs = [(w_ih, b_ih + b_hh) for w_ih, _, b_ih, b_hh in weights]
        self.table = None
        if embedding is not None:
            w_ih, bias = self.inputs[0]
            self.table = torch.addmm(bias, embedding.detach().float(), w_ih.t())  # (V, 4H)
        self.embedded_step = self.step_function(from_tokens=False)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """x (B, E) embedded, state (L, B, H) each -> out (B, H), new state."""
        return self.embedded_step(x, state)

    def step_function(self, from_tokens: bool) -> Callable:
        """The step as a bare function: (x, state (L, B, H) each) -> out (B, H), new state, with x
        the tokens (B,) when `from_tokens` (the table's way) or their embeddings (B, E)."""
        recurrent, inputs = [layer.product for layer in self.recurrent], self.inputs
        table, embedding, linear = self.table, torch.embedding, torch.nn.functional.linear
        if from_tokens and table is None:
            raise ValueError("this LSTM step has no table of input products")
        if from_tokens and len(recurrent) == 1:  # the common case, without the per-layer bookkeeping
            product = recurrent[0]

            def one_layer_step(x, state):
                h, c = lstm_update(embedding(table, x).add_(product(state[0][0])), state[1][0])  # (B, H) each
                return h, (h.unsqueeze(0), c.unsqueeze(0))

            return one_layer_step

        def step(x, state):
            hs, cs = [], []
            for layer, (product, h, c) in enumerate(zip(recurrent, state[0], state[1])):  # h, c (B, H)
                if from_tokens and layer == 0:
                    gates = embedding(table, x).add_(product(h))  # (B, 4H)
                else:
                    gates = linear(x, *inputs[layer]).add_(product(h))
                x, c = lstm_update(gates, c)
                hs.append(x)
                cs.append(c)
            return x, (_stack(hs), _stack(cs))

        return step


def _stack(layers: list[torch.Tensor]) -> torch.Tensor:
    return layers[0].unsqueeze(0) if len(layers) == 1 else torch.stack(layers)  # a view for one layer


@torch.no_grad()
def round_to_int8(*weights: torch.Tensor) -> None:
    """Replace float weights, side by side as one matrix, by their int8-grid values (what the int8
    product computes with)."""
    q, scales = int8_rows(torch.cat(weights, dim=1))
    rounded = (q.float() * scales.unsqueeze(1)).split([w.size(1) for w in weights], dim=1)
    for weight, value in zip(weights, rounded):
        weight.copy_(value.to(weight.dtype))


class Int8Encoder(nn.Module):
    """The bidirectional encoder (`chatbot.model.Encoder`, same inputs and outputs) with int8
    recurrent weights: per layer, the input products of every token and both directions at once,
    then per token one int8 product for both directions' recurrences (their matrices side by
    side, block-diagonal) and one gate update (`lstm_update`) for both.

    fbgemm's int8 LSTM (torch.ao) runs each direction on its own, two products and a dozen small
    ops per token and direction; this is faster and closer to fp32. With `embedding` given, the
    first layer's input products are looked up by token (`read`) in a table made once ((V, 8h)
    fp32) instead of one product per message.
    """

    def __init__(self, encoder: nn.Module, embedding: torch.Tensor | None = None):
        super().__init__()
        self.layers = []
        for fwd, bwd in zip(encoder.forward_lstms, encoder.backward_lstms):
            h = fwd.hidden_size
            w_ih = torch.cat(
                [doubled_cell_gate(fwd.weight_ih_l0), doubled_cell_gate(bwd.weight_ih_l0)]
            )  # (8h, in): forward gates, then backward
            bias = torch.cat(
                [doubled_cell_gate(fwd.bias_ih_l0 + fwd.bias_hh_l0), doubled_cell_gate(bwd.bias_ih_l0 + bwd.bias_hh_l0)]
            )
            zero = torch.zeros(4 * h, h)
            w_hh = _by_gate(
                torch.cat([doubled_cell_gate(fwd.weight_hh_l0), zero], 1),
                torch.cat([zero, doubled_cell_gate(bwd.weight_hh_l0)], 1),
            )
            self.layers.append((w_ih.t().contiguous(), bias, Int8Linear(w_hh, None).product, h))  # w_hh (8h, 2h)
        self.table = None
        if embedding is not None:
            w_ih, bias, _, _ = self.layers[0]
            self.table = torch.addmm(bias, embedding.detach().float(), w_ih)  # (V, 8h)

    def read(self, src: torch.Tensor, lengths: torch.Tensor, embed) -> tuple[torch.Tensor, torch.Tensor]:
        """`Encoder.forward` from token ids (B, S), embedded by `embed`, through the table when
        there is one."""
        if self.table is None:
            return self(embed(src), lengths)
        return self._encode(torch.embedding(self.table, src), lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, S, E) embedded source, lengths (B,) -> states (B, S, H) and final states (L, B, H)."""
        w_ih, bias, _, _ = self.layers[0]
        return self._encode(torch.addmm(bias, x.reshape(-1, x.size(-1)), w_ih).view(*x.shape[:2], -1), lengths)

    def _encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs (B, S, 8h): the first layer's input products, forward gates then backward."""
        B, S, _ = inputs.shape
        full = bool((lengths == S).all())  # no padding: reversing each row is a flip
        reverse = None if full else reversal_index(lengths, S)
        rows, last = torch.arange(B), (lengths - 1).clamp(min=0)
        finals, x = [], None  # x: the previous layer's states (B, S, H)
        for layer, (w_ih, bias, recurrent, h) in enumerate(self.layers):
            if layer:
                inputs = torch.addmm(bias, x.reshape(B * S, -1), w_ih).view(B, S, 8 * h)
            backward = (
                inputs[..., 4 * h :].flip(1) if full else gather_rows(inputs[..., 4 * h :], reverse)
            )  # each row read from its end
            inputs = torch.stack([inputs[..., : 4 * h].view(B, S, 4, h), backward.reshape(B, S, 4, h)], 3).view(
                B, S, 8 * h
            )  # by gate
            state = c = inputs.new_zeros(B, 2 * h)  # [forward | backward]
            outputs = []
            for t in range(S):
                state, c = lstm_update(recurrent(state).add_(inputs[:, t]), c)
                outputs.append(state)
            out = torch.stack(outputs, 1)  # (B, S, 2h): forward states, backward states in reading order
            fwd, bwd = out[..., :h], out[..., h:]
            finals.append(torch.cat([fwd[rows, last], bwd[rows, last]], -1))  # (B, H)
            x = torch.cat([fwd, bwd.flip(1) if full else gather_rows(bwd, reverse)], -1)  # (B, S, H)
        return x, torch.stack(finals)


class Int8Combine(nn.Module):
    """The decoder's attentional layer W [context; h] as W_c context + W_h h, both int8.

    The context is the attention-weighted sum of the encoder states, so W_c context is the same
    weighted sum of the states' W_c products, which decoding makes once per message
    (`Int8Engine.encode`); each token then reads W_h alone, half the layer's bytes, and skips a
    concatenation. `forward` takes [context; h] as the float layer does.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        H = linear.in_features // 2
        self.context, self.state = (
            Int8Linear(linear.weight[:, :H], None),
            Int8Linear(linear.weight[:, H:], None),
        )  # (A, H) each

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        H = z.size(-1) // 2
        return self.context(z[..., :H]) + self.state(z[..., H:])


def _by_gate(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """Two directions' gate rows (4h each) ordered gate by gate, [i_f, i_b, f_f, f_b, g_f, g_b,
    o_f, o_b], so that each gate's chunk holds both directions side by side."""
    return torch.cat([t for pair in zip(forward.chunk(4), backward.chunk(4)) for t in pair])


@torch.no_grad()
def quantize(model: Seq2Seq) -> Seq2Seq:
    """The model with int8 weights in its matrix products, in place, for teacher-forced scoring
    with the weights decoding uses (`Int8Engine.scorer` quantizes a copy): the encoder's and the
    decoder's recurrent products, the bridge, the attention keys, the attentional layer and the
    output layer. Embeddings and the LSTMs' input products stay fp32."""
    model.encoder = Int8Encoder(model.encoder, model.embedding.weight)
    model.bridge.h, model.bridge.c = int8_linear(model.bridge.h), int8_linear(model.bridge.c)
    decoder = model.decoder
    if hasattr(decoder.attention, "key"):
        decoder.attention.key = int8_linear(decoder.attention.key)
    for n in range(decoder.lstm.num_layers):  # what Int8LSTMStep computes with
        round_to_int8(getattr(decoder.lstm, f"weight_hh_l{n}"))
    decoder.combine = Int8Combine(decoder.combine)
    if isinstance(model.out, LowRankLinear):
        model.out.down, model.out.up = int8_linear(model.out.down), int8_linear(model.out.up)
    else:
        model.out = int8_linear(model.out)
    return model


def int8_linear(linear: nn.Linear) -> Int8Linear:
    """The layer's int8 twin. Its float weight is rounded to the int8 grid in place too: where that
    matrix is shared (a tied output layer is the embedding) the float side holds the same values."""
    round_to_int8(linear.weight)
    return Int8Linear(linear.weight, linear.bias)


class Int8Memory(NamedTuple):
    """`chatbot.model.Memory` and `values`: the attentional layer's context half applied to every
    encoder state, once per message (`Int8Combine`)."""

    states: torch.Tensor  # (B, S, H)
    keys: torch.Tensor  # (B, S, H)
    bias: torch.Tensor  # (B, 1, S)
    tokens: torch.Tensor  # (B, S)
    values: torch.Tensor  # (B, S, A)

    def index_select(self, index: torch.Tensor) -> Int8Memory:
        return Int8Memory(*(t.index_select(0, index) for t in self))


class Int8Engine(ModelEngine):
    """Replies with int8 weights, built from a float model that it leaves as it is."""

    shares_memory = True

    def __init__(self, model: Seq2Seq):
        require_cpu(model.device)
        if not available():
            raise ChatbotError("int8 weights need a torch with fbgemm quantized kernels")
        super().__init__(model)
        embeddings, decoder = model.embedding.weight, model.decoder
        self.encoder = Int8Encoder(model.encoder, embeddings)
        self.bridge_h, self.bridge_c = (
            Int8Linear(model.bridge.h.weight, model.bridge.h.bias),
            Int8Linear(model.bridge.c.weight, model.bridge.c.bias),
        )
        attention = decoder.attention
        self.key = (
            Int8Linear(attention.key.weight, None).product if hasattr(attention, "key") else (lambda states: states)
        )
        from_tokens = not model.cfg.input_feeding  # without input feeding the LSTM's inputs are embeddings alone
        cell = Int8LSTMStep(decoder.lstm, embeddings if from_tokens else None).step_function(from_tokens)
        combine = Int8Combine(decoder.combine)
        self.context, combine_state, baddbmm, tanh = (
            combine.context.product,
            combine.state.product,
            torch.baddbmm,
            torch.tanh,
        )

        def attentional_state(weights, h, memory):  # W_c context + W_h h, the first from memory.values
            if shared(memory, h):
                return tanh(torch.addmm(combine_state(h), weights[:, 0], memory.values[0]))  # (B, A)
            return tanh(baddbmm(combine_state(h).unsqueeze(1), weights, memory.values)[:, 0])  # (B, A)

        out = model.out
        if isinstance(out, LowRankLinear):
            down, up = Int8Linear(out.down.weight, None).product, Int8Linear(out.up.weight, out.up.bias).product
            output = lambda x: up(down(x))  # noqa: E731
        else:
            output = Int8Linear(out.weight, out.bias).product
        self.step = step_function(model, cell, from_tokens, attentional_state, output)
        self._scorer = None

    @property
    def scorer(self) -> Seq2Seq:
        """A copy of the model with the int8 layers in place, for teacher-forced figures."""
        if self._scorer is None:
            self._scorer = quantize(copy.deepcopy(self.model))
        return self._scorer

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[Int8Memory, tuple]:
        """`Seq2Seq.encode` with int8 products, and the memory's `values`."""
        lengths = lengths.to(src.device)
        states, final = self.encoder.read(src, lengths, lambda ids: torch.embedding(self.model.embedding.weight, ids))
        mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, S)
        bias = torch.zeros(mask.shape, device=src.device).masked_fill(~mask, float("-inf")).unsqueeze(1)  # (B, 1, S)
        state = (torch.tanh(self.bridge_h(final)), self.bridge_c(final))
        return Int8Memory(states, self.key(states), bias, src, self.context(states)), state
