"""Int8 weights for decoding on the CPU.

A reply is made one token at a time, and each token reads the decoder's big weight matrices
once (the LSTM's, the attentional layer's and the 8,000-row output layer's) to compute a single
row: the step is bound by memory traffic, not arithmetic. As int8 with one scale per output row
they are a quarter of fp32's bytes, and fbgemm's dynamically quantised product (activations
quantised per call) ran the output layer 3.2x and the LSTM 3.7x faster than fp32 here (2
threads, one row).

`quantize(model)` also rounds those weights to the int8 grid in place, so teacher-forced
perplexity runs with the weights that decoding uses (its activations are quantised per batch
rather than per row, so it is close to, not identical with, what decoding computes).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch
from torch import nn

from chatbot.errors import ChatbotError
from chatbot.model import LowRankLinear, Seq2Seq


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
            qweight = torch._make_per_channel_quantized_tensor(q, scales.double(), torch.zeros_like(scales, dtype=torch.long), 0)
        self.packed = torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.detach().float())
        self.weight = q  # for inspection: the int8 values
        self.out_features = q.size(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function()(x)

    def function(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The product as a bare function of x, for decoding's flat step."""
        op, packed = linear_dynamic(), self.packed
        # reduce_range True: 7-bit activations, so products cannot saturate on CPUs without VNNI
        return lambda x: op(x, packed, True) if x.dtype == torch.float32 else op(x.float(), packed, True).to(x.dtype)


@functools.cache
def linear_dynamic():
    """fbgemm's product as the bare C++ function: torch.ops' Python wrapper inspects every argument
    of an op that takes a packed weight, which cost more than a small product itself (~95 against
    ~110 us a call for a 64 x 32 matrix here, the machine busy)."""
    return torch.ops.quantized.linear_dynamic.default._op


class Int8LSTMStep(nn.Module):
    """One time step of an LSTM for decoding: per layer, the recurrent product in int8 and the
    input product in fp32, then the gates (PyTorch's order: input, forget, cell, output).

    A step is bound by the bytes of weights it reads. The first layer's inputs are embedding
    rows, so with `embedding` given its input product is read from a table of every vocabulary
    entry's, made once ((V, 4H) fp32: 65 MB for the bundled model): the step then reads the 1 MB
    int8 recurrent matrix instead of 1.5 MB for both (a step's four products 130 against 158 us
    here). The table is `step_function(from_tokens=True)`'s; `forward` takes embedded inputs.

    The cell gate's rows are stored doubled, so that one sigmoid over all four gates also gives
    tanh(g) = 2 sigmoid(2g) - 1: the same weights to the bit (an int8 row times twice its scale),
    and a step in a third fewer tensor operations, which is what a one-row step pays for.
    """

    def __init__(self, lstm: nn.LSTM, embedding: torch.Tensor | None = None):
        super().__init__()
        H = lstm.hidden_size
        double_g = torch.ones(4 * H, 1)
        double_g[2 * H : 3 * H] = 2.0
        weights = [[getattr(lstm, f"{name}_l{n}").detach().float() for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                   for n in range(lstm.num_layers)]
        self.recurrent = nn.ModuleList(Int8Linear(w_hh * double_g, None) for _, w_hh, _, _ in weights)
        self.inputs = [(w_ih * double_g, (b_ih + b_hh) * double_g[:, 0]) for w_ih, _, b_ih, b_hh in weights]
        self.table = None
        if embedding is not None:
            w_ih, bias = self.inputs[0]
            self.table = torch.addmm(bias, embedding.detach().float(), w_ih.t())  # (V, 4H)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """x (B, E) embedded, state (L, B, H) each -> out (B, H), new state."""
        return self.step_function(from_tokens=False)(x, state)

    def step_function(self, from_tokens: bool) -> Callable:
        """The step as a bare function: (x, state (L, B, H) each) -> out (B, H), new state, with x
        the tokens (B,) when `from_tokens` (the table's way) or their embeddings (B, E)."""
        recurrent = [layer.function() for layer in self.recurrent]
        inputs = self.inputs[1:] if from_tokens else self.inputs
        table, embedding, linear = self.table, torch.embedding, torch.nn.functional.linear
        if from_tokens and table is None:
            raise ValueError("this LSTM step has no table of input products")

        def step(x, state):
            hs, cs = [], []
            for layer, (product, h, c) in enumerate(zip(recurrent, state[0], state[1])):  # h, c (B, H)
                if from_tokens and layer == 0:
                    gates = embedding(table, x).add_(product(h))  # (B, 4H)
                else:
                    w_ih, bias = inputs[layer - 1 if from_tokens else layer]
                    gates = linear(x, w_ih, bias).add_(product(h))
                i, f, g, o = gates.sigmoid_().chunk(4, dim=-1)
                c = torch.addcmul(f * c, i, g, value=2).sub_(i)  # f c + i (2 g - 1): g is sigmoid(2 x cell gate)
                x = o * torch.tanh(c)
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


def int8_lstm(lstm: nn.LSTM) -> nn.Module:
    """A whole-sequence LSTM with int8 weights (one scale per row), run by fbgemm: for the
    encoder, whose fused fp32 LSTM spends most of a short message's time setting itself up."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized.dynamic import LSTM
        from torch.ao.quantization import per_channel_dynamic_qconfig

        lstm.qconfig = per_channel_dynamic_qconfig
        try:
            return LSTM.from_float(lstm)
        finally:
            del lstm.qconfig


@torch.no_grad()
def quantize(model: Seq2Seq) -> Seq2Seq:
    """The model with int8 weights in every matrix product, in place: the encoder's LSTMs, the
    bridge and the attention keys (once per message), the decoder's LSTM, its attentional layer
    and the output layer (once per token).

    Embeddings stay in floating point: a reply reads one row of them per token. Int8 throughout
    cost the bundled model 0.5% of test perplexity (152.03 against 151.27 in fp32; 0.1% before
    its output layer was stored at rank 192).
    """
    encoder = model.encoder
    encoder.forward_lstms = nn.ModuleList(int8_lstm(lstm) for lstm in encoder.forward_lstms)
    encoder.backward_lstms = nn.ModuleList(int8_lstm(lstm) for lstm in encoder.backward_lstms)
    model.bridge.h, model.bridge.c = int8_linear(model.bridge.h), int8_linear(model.bridge.c)
    decoder = model.decoder
    if hasattr(decoder.attention, "key"):
        decoder.attention.key = int8_linear(decoder.attention.key)
    for n in range(decoder.lstm.num_layers):  # the int8 part of Int8LSTMStep
        round_to_int8(getattr(decoder.lstm, f"weight_hh_l{n}"))
    decoder.cell = Int8LSTMStep(decoder.lstm, None if model.cfg.input_feeding else model.embedding.weight)
    decoder.combine = int8_linear(decoder.combine)
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
