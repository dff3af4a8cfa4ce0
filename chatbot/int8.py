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
        # reduce_range: 7-bit activations, so products cannot saturate on CPUs without VNNI
        if x.dtype == torch.float32:
            return linear_dynamic()(x, self.packed, True)
        return linear_dynamic()(x.float(), self.packed, True).to(x.dtype)


@functools.cache
def linear_dynamic():
    """fbgemm's product as the bare C++ function: torch.ops' Python wrapper inspects every argument
    of an op that takes a packed weight, which cost more than a small product itself (~95 against
    ~110 us a call for a 64 x 32 matrix here, the machine busy)."""
    return torch.ops.quantized.linear_dynamic.default._op


class Int8LSTMStep(nn.Module):
    """One time step of an LSTM: per layer, the input and recurrent products as one int8 product
    over [x; h], then the gates (PyTorch's order: input, forget, cell, output).

    The cell gate's rows are stored doubled, so that one sigmoid over all four gates also gives
    tanh(g) = 2 sigmoid(2g) - 1: the same weights to the bit (an int8 row times twice its scale),
    and a step in a third fewer tensor operations, which is what a one-row step pays for.
    """

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        H = lstm.hidden_size
        double_g = torch.ones(4 * H, 1)
        double_g[2 * H : 3 * H] = 2.0
        self.layers = nn.ModuleList(
            Int8Linear(torch.cat([getattr(lstm, f"weight_ih_l{n}"), getattr(lstm, f"weight_hh_l{n}")], dim=1) * double_g,
                       (getattr(lstm, f"bias_ih_l{n}") + getattr(lstm, f"bias_hh_l{n}")) * double_g[:, 0])
            for n in range(lstm.num_layers)
        )

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """x (B, E), state (L, B, H) each -> out (B, H), new state."""
        return lstm_step_function([layer.forward for layer in self.layers])(x, state)


def lstm_step_function(joints: list) -> Callable:
    """The step of `Int8LSTMStep` given each layer's product over [x; h] as a function: (x (B, E),
    state (L, B, H) each) -> out (B, H), new state."""
    cat, sigmoid, addcmul, tanh = torch.cat, torch.sigmoid, torch.addcmul, torch.tanh

    def step(x, state):
        hs, cs = [], []
        for joint, h, c in zip(joints, state[0], state[1]):  # h, c (B, H)
            i, f, g, o = sigmoid(joint(cat([x, h], dim=-1))).chunk(4, dim=-1)
            c = addcmul(f * c, i, g, value=2).sub_(i)  # f c + i (2 g - 1): g is sigmoid(2 x cell gate)
            x = o * tanh(c)
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
    for n in range(decoder.lstm.num_layers):  # per layer, one matrix in Int8LSTMStep
        round_to_int8(getattr(decoder.lstm, f"weight_ih_l{n}"), getattr(decoder.lstm, f"weight_hh_l{n}"))
    decoder.cell = Int8LSTMStep(decoder.lstm)
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
