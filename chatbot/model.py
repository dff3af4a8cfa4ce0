"""Seq2seq with attention: a bidirectional LSTM encoder, an LSTM decoder that attends over every
encoder state, and a softmax over the SentencePiece vocabulary, mixed, with copy attention, with
the attention over the source's own pieces.

This file is the model as a reader should meet it: each part a small module, the shapes in the
comments, and `greedy_reply` at the bottom, the whole decoding loop in a dozen lines. Training
and `chatbot evaluate` run it as it is; replies run a faster engine built from it
(`chatbot.engine`), proven equal to it by the tests, and `--reference` replies through it.

Shapes: B batch, S source length, T reply length, E embedding, H hidden, A attentional size,
V vocabulary, L layers.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import NamedTuple

import torch
from torch import nn

from chatbot.errors import ChatbotError
from chatbot.i18n import tr
from chatbot.model_config import ATTENTION_KINDS, ModelConfig  # noqa: F401 (re-exported: the model's settings)
from chatbot.tokenizer import BOS, EOS, PAD


class Memory(NamedTuple):
    """What the decoder attends to: encoder states, their projected keys, the padding mask (as a
    bias on the attention scores) and the source's pieces (what copy attention writes back)."""

    states: torch.Tensor  # (B, S, H)
    keys: torch.Tensor  # (B, S, H) for dot/general, (B, S, H) projected for additive
    bias: torch.Tensor  # (B, 1, S) added to the attention scores: 0 on real tokens, -inf on padding
    tokens: torch.Tensor  # (B, S) the source's piece ids, PAD on padding

    def index_select(self, index: torch.Tensor) -> Memory:
        """Reorder or repeat along the batch, as beam search does."""
        return type(self)(*(t.index_select(0, index) for t in self))


State = tuple[torch.Tensor, torch.Tensor]  # LSTM (h, c), each (L, B, H)


def pad_right(rows: list[list[int]], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Piece ids of unequal lengths -> a (B, longest) tensor padded with PAD on the right, and
    the lengths (B,): the model reads batches in this form."""
    lengths = torch.tensor([len(r) for r in rows], device=device)
    batch = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = torch.tensor(row, device=device)
    return batch, lengths


class Encoder(nn.Module):
    """Bidirectional LSTM, each direction its own LSTM, exact on right-padded batches.

    The forward direction reads the padded batch as it is: padding comes after every real
    token, so it never reaches a real state. The backward direction reads each row reversed
    within its own length, so again the real tokens come first and the padding last. One
    fused LSTM call per direction and layer, the fastest form on the CPU (packed sequences
    step one time step at a time there, several times slower). Each direction's final state
    is its output at the row's last real token.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = cfg.layers
        H = cfg.hidden_size // 2
        sizes = [cfg.embedding_dim] + [cfg.hidden_size] * (cfg.layers - 1)
        self.forward_lstms = nn.ModuleList(nn.LSTM(n, H, batch_first=True) for n in sizes)
        self.backward_lstms = nn.ModuleList(nn.LSTM(n, H, batch_first=True) for n in sizes)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, S, E) embedded source, lengths (B,) -> states (B, S, H) and final states (L, B, H)."""
        lengths = lengths.to(x.device)
        reverse = reversal_index(lengths, x.size(1))  # (B, S)
        rows = torch.arange(x.size(0), device=x.device)
        last = (lengths - 1).clamp(min=0)  # (B,) each row's last real token
        finals = []
        for layer in range(self.layers):
            if layer:
                x = self.dropout(x)
            fwd, _ = self.forward_lstms[layer](x)  # (B, S, H/2)
            bwd, _ = self.backward_lstms[layer](gather_rows(x, reverse))  # (B, S, H/2), row-reversed
            finals.append(torch.cat([fwd[rows, last], bwd[rows, last]], dim=-1))  # (B, H)
            x = torch.cat([fwd, gather_rows(bwd, reverse)], dim=-1)  # (B, S, H)
        return x, torch.stack(finals)


def reversal_index(lengths: torch.Tensor, S: int) -> torch.Tensor:
    """(B, S) index that reverses each row within its length and leaves padding in place."""
    t = torch.arange(S, device=lengths.device).unsqueeze(0)  # (1, S)
    n = lengths.unsqueeze(1)  # (B, 1)
    return torch.where(t < n, n - 1 - t, t)


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, S, D) with each row's positions taken in the order `index` (B, S) gives."""
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class Bridge(nn.Module):
    """Maps the encoder's final states, both directions side by side, to the decoder's initial (h, c)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.h = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.c = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, final: torch.Tensor) -> State:
        """final (L, B, H) -> (h, c), each (L, B, H)."""
        return torch.tanh(self.h(final)), self.c(final)


class Attention(nn.Module):
    """Scores every encoder state against the decoder state; padding gets weight exactly 0."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind = cfg.attention
        H = cfg.hidden_size
        if self.kind == "general":
            self.key = nn.Linear(H, H, bias=False)
        elif self.kind == "additive":
            self.key = nn.Linear(H, H, bias=False)
            self.query = nn.Linear(H, H)
            self.v = nn.Linear(H, 1, bias=False)

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        """Project encoder states once per message, not once per decoder step."""
        return states if self.kind == "dot" else self.key(states)

    def scores(self, query: torch.Tensor, memory: Memory) -> torch.Tensor:
        """query (B, T, H) decoder states -> scores (B, T, S): how well each encoder state matches
        each decoder state, -inf on padding."""
        bias = memory.bias.to(query.dtype)  # (B, 1, S)
        if self.kind == "additive":  # Bahdanau: v . tanh(W q + U k)
            q = self.query(query).unsqueeze(2)  # (B, T, 1, H)
            return self.v(torch.tanh(q + memory.keys.unsqueeze(1))).squeeze(-1) + bias  # (B, T, S)
        return torch.baddbmm(bias, query, memory.keys.transpose(1, 2))  # Luong: bias + q k^T (k = W s for general)

    def forward(self, query: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, T, H) decoder states -> context (B, T, H), weights (B, T, S).

        Each decoder state scores every encoder state; softmax turns the scores into weights that
        sum to 1 over the message (padding gets exactly 0); the context is the weighted sum."""
        scores = self.scores(query, memory)  # (B, T, S)
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)  # (B, T, S), summed in fp32
        context = torch.bmm(weights, memory.states)  # (B, T, H)
        return context, weights


class Decoder(nn.Module):
    """LSTM decoder; its attentional state tanh(W[context; h]) feeds the output layer."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.dropout = nn.Dropout(cfg.dropout)
        extra = cfg.attentional_size if cfg.input_feeding else 0
        self.lstm = nn.LSTM(
            cfg.embedding_dim + extra,
            cfg.hidden_size,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.attention = Attention(cfg)
        self.combine = nn.Linear(2 * cfg.hidden_size, cfg.attentional_size, bias=False)

    def forward(self, x: torch.Tensor, state: State, memory: Memory) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Training and scoring, without input feeding: x (B, T, E) embedded tokens -> attentional
        states (B, T, A), new state, attention (B, T, S). The LSTM runs over all T tokens in one call."""
        out, state = self.lstm(x, state)  # (B, T, H)
        context, weights = self.attention(out, memory)  # (B, T, H), (B, T, S)
        attentional = torch.tanh(self.combine(torch.cat([context, out], dim=-1)))  # (B, T, A)
        return self.dropout(attentional), state, weights

    def step(
        self, x: torch.Tensor, state: State, memory: Memory, feed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One token: x (B, E) embedded -> attentional state (B, A), new state, attention (B, S).

        With input feeding, `feed` is the previous attentional state (B, A)."""
        if self.cfg.input_feeding:
            x = torch.cat([x, feed], dim=-1)  # (B, E + A)
        out, state = self.lstm(x.unsqueeze(1), state)  # (B, 1, H), (h, c) each (L, B, H)
        context, weights = self.attention(out, memory)  # (B, 1, H), (B, 1, S)
        attentional = torch.tanh(self.combine(torch.cat([context, out], dim=-1)))  # (B, 1, A)
        return self.dropout(attentional[:, 0]), state, weights[:, 0]


class LowRankLinear(nn.Module):
    """x W^T + b with the (out x in) matrix W held as up (out x rank) times down (rank x in).

    The output layer is the biggest matrix a reply reads at every token, even as int8 more than a
    core's L2 cache holds. A trained output layer is close to low-rank, so a thin pair costs
    little perplexity and stays in cache from one token to the next (`docs/performance.md`).
    """

    def __init__(self, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    @torch.no_grad()
    def copy_best_approximation(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Set up @ down to the closest rank-r matrix to `weight` (truncated SVD), and the bias."""
        rank = self.down.out_features
        u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
        root = s[:rank].sqrt()  # split the singular values evenly between the two factors
        self.up.weight.copy_(u[:, :rank] * root)
        self.down.weight.copy_(root.unsqueeze(1) * vh[:rank])
        self.up.bias.copy_(bias)


class Copy(nn.Module):
    """Copy attention (a pointer-generator, See et al. 2017): the next piece is written from the
    vocabulary with probability g, or copied from the source with probability 1 - g, each source
    position by its attention weight. The source and the reply share one vocabulary, so a copied
    position adds its weight to its own piece id:

        p(w) = g softmax(logits)_w + (1 - g) sum of a_i over the positions i whose piece is w

    A name said two turns back ("my name is Sam") can so be written back although the softmax
    alone gives it little. The model's "logits" become log p(w): a log-softmax leaves them as
    they are, so training's loss, perplexity and every decoding strategy read them unchanged."""

    GATE_BIAS = 2.0  # starts writing from the vocabulary (g = 0.88): a trained model it is added to keeps its replies

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.attentional_size, 1)

    def generate_share(self, attentional: torch.Tensor) -> torch.Tensor:
        """attentional (N, A) -> g (N, 1), the share written from the vocabulary."""
        return torch.sigmoid(self.gate(attentional).float())

    def forward(
        self, logits: torch.Tensor, attentional: torch.Tensor, weights: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        """logits (N, V), attentional (N, A), attention weights (N, S), source pieces (N, S) -> log p (N, V), fp32."""
        g = self.generate_share(attentional)  # (N, 1)
        written = torch.softmax(logits.float(), dim=-1) * g  # (N, V)
        mixed = written.scatter_add(1, tokens, weights.float() * (1 - g))  # (N, V); padding adds 0 to PAD
        return torch.log(mixed.clamp_min(1e-30))


class Seq2Seq(nn.Module):
    """The whole model. `forward` scores a reply under teacher forcing; decoding uses `encode`
    once and `step` for each new token."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim, padding_idx=PAD)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg)
        self.bridge = Bridge(cfg)
        self.decoder = Decoder(cfg)
        if cfg.output_rank:
            self.out = LowRankLinear(cfg.attentional_size, cfg.vocab_size, cfg.output_rank)
        else:
            self.out = nn.Linear(cfg.attentional_size, cfg.vocab_size, bias=True)
        if cfg.tie_embeddings:
            self.out.weight = self.embedding.weight
        self.copy = Copy(cfg) if cfg.copy_attention else None
        self._init_weights()

    def _init_weights(self):
        for name, p in self.named_parameters():
            if "bias" in name:
                nn.init.zeros_(p)
            elif p.dim() > 1:
                nn.init.uniform_(p, -0.1, 0.1)
        with torch.no_grad():
            self.embedding.weight[PAD].zero_()
            if self.copy is not None:
                self.copy.gate.bias.fill_(Copy.GATE_BIAS)

    @torch.no_grad()
    def initialize_from(self, other: Seq2Seq) -> None:
        """Start from another trained model's weights. Only the output layer may differ in shape:
        a low-rank one becomes the best approximation of the other's (a full one, their product).
        A copy gate the other lacks starts as a new one does."""
        ours, theirs = self.state_dict(), other.state_dict()
        shared = {k: v for k, v in theirs.items() if not k.startswith("out.")}
        for name, tensor in shared.items():
            if name not in ours or ours[name].shape != tensor.shape:
                raise ChatbotError(
                    tr("cannot start from that model: {name} differs (only the output layer may)", name=name)
                )
        self.load_state_dict(shared, strict=False)
        out = other.out
        weight, bias = (
            (out.up.weight @ out.down.weight, out.up.bias) if isinstance(out, LowRankLinear) else (out.weight, out.bias)
        )
        if isinstance(self.out, LowRankLinear):
            self.out.copy_best_approximation(weight, bias)
        elif not self.cfg.tie_embeddings:
            self.out.weight.copy_(weight)
            self.out.bias.copy_(bias)

    def with_settings(self, **changes) -> Seq2Seq:
        """A new model with a few settings changed (`ModelConfig` fields), starting from this one's
        weights: `initialize_from` says which changes keep them."""
        model = Seq2Seq(replace(self.cfg, **changes)).train(self.training)
        model.initialize_from(self)
        return model

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.embedding(tokens))  # (B, T, E)

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    def _apply(self, fn, recurse=True):
        """After `.to(...)`: an LSTM moved to the GPU holds its weights as separate tensors, and
        cuDNN would copy them into one block (with a warning) on every call; pack them once here.
        (On the CPU `flatten_parameters` does nothing.)"""
        super()._apply(fn, recurse)
        for module in self.modules():
            if isinstance(module, nn.LSTM):
                module.flatten_parameters()
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[Memory, State]:
        """src (B, S) right-padded, lengths (B,) -> memory and the decoder's initial state."""
        states, final = self.encoder(self.embed(src), lengths)  # (B, S, H), (L, B, H)
        mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < lengths.to(src.device).unsqueeze(1)  # (B, S)
        bias = torch.zeros(mask.shape, device=src.device).masked_fill(~mask, float("-inf")).unsqueeze(1)  # (B, 1, S)
        memory = Memory(states, self.decoder.attention.keys(states), bias, src)
        return memory, self.bridge(final)

    def initial_feed(self, batch_size: int) -> torch.Tensor:
        """The attentional state before the first token: zeros (B, A) (read with input feeding)."""
        return torch.zeros(batch_size, self.cfg.attentional_size, device=self.device, dtype=self.embedding.weight.dtype)

    def step(
        self, tokens: torch.Tensor, state: State, memory: Memory, feed: torch.Tensor
    ) -> tuple[torch.Tensor, State, torch.Tensor, torch.Tensor]:
        """One decoding step: tokens (B,) -> logits (B, V) (with copy attention, log p), state,
        attention (B, S), feed (B, A)."""
        attentional, state, weights = self.decoder.step(self.embed(tokens), state, memory, feed)
        return self.project(attentional, weights, memory.tokens), state, weights, attentional

    def project(self, attentional: torch.Tensor, weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """attentional states (N, A), their attention (N, S) and source pieces (N, S) -> logits
        (N, V): the output layer's, or with copy attention log p of the mixture (`Copy`)."""
        logits = self.out(attentional)
        return logits if self.copy is None else self.copy(logits, attentional, weights, tokens)

    def forward(
        self, src: torch.Tensor, lengths: torch.Tensor, tgt_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: tgt_in (B, T) starts with BOS -> attentional states (B, T, A), attention (B, T, S).

        Project only the states you score (`self.out`), so padding never costs a softmax.
        """
        memory, state = self.encode(src, lengths)
        stepwise = self.cfg.input_feeding or (self.training and self.cfg.teacher_forcing < 1.0)
        if not stepwise:
            attentional, _, weights = self.decoder(self.embed(tgt_in), state, memory)
            return attentional, weights
        feed = self.initial_feed(src.size(0))
        outputs, all_weights = [], []
        token = tgt_in[:, 0]
        for t in range(tgt_in.size(1)):
            feed, state, weights = self.decoder.step(self.embed(token), state, memory, feed)  # (B, A), state, (B, S)
            outputs.append(feed)
            all_weights.append(weights)
            if t + 1 < tgt_in.size(1):
                token = tgt_in[:, t + 1]
                if self.training and random.random() >= self.cfg.teacher_forcing:
                    token = self.project(feed, weights, src).argmax(-1).detach()
        return torch.stack(outputs, dim=1), torch.stack(all_weights, dim=1)

    def scored_logits(
        self, src: torch.Tensor, lengths: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor, forward=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, V) and targets (N,) of the N real target tokens; padding is never projected.

        `forward` is the module to run the forward pass through (a DistributedDataParallel wrapper)."""
        attentional, weights = (forward or self)(src, lengths, tgt_in)
        mask = tgt_out != PAD  # (B, T)
        tokens = src.unsqueeze(1).expand(-1, mask.size(1), -1)[mask]  # (N, S) each target's source pieces
        return self.project(attentional[mask], weights[mask], tokens), tgt_out[mask]


@torch.no_grad()
def greedy_reply(model: Seq2Seq, source: list[int], max_length: int = 40) -> tuple[list[int], list[list[float]]]:
    """The decoding loop at its simplest, beside the model it runs: encode the message once, then
    feed the decoder its own most likely piece, starting from BOS, until it writes EOS.
    (`chatbot.decoding` runs greedy search, beam search and sampling with their rules; this is
    the idea they share.) source: a message's piece ids -> the reply's piece ids, EOS excluded,
    and for each of them its attention over the message's pieces."""
    model.eval()
    src, lengths = pad_right([source], model.device)  # (1, S), (1,)
    memory, state = model.encode(src, lengths)  # S encoder states; the decoder's first (h, c)
    token, feed = torch.tensor([BOS], device=model.device), model.initial_feed(1)  # (1,), (1, A)
    reply, attention = [], []
    for _ in range(max_length):
        logits, state, weights, feed = model.step(token, state, memory, feed)  # (1, V), (h, c), (1, S), (1, A)
        token = logits.argmax(-1)  # (1,) the most likely next piece
        if token.item() == EOS:
            break
        reply.append(token.item())
        attention.append(weights[0].tolist())  # how much each message piece counted for this one
    return reply, attention
