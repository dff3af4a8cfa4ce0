"""Taught replies, used at the next message without retraining: a memory of the model's own
decoder states (kNN-LM, Khandelwal et al. 2020; kNN-MT, 2021).

When a person corrects a reply (or rates one good), the model reads the taught reply after its
message, teacher-forced, and at every position keeps the decoder's attentional state (the vector
its output layer reads) as a key, with the piece that came next as its value. While a reply is
decoded, each step's attentional state looks up the nearest keys (cosine similarity); where they
are near, the distribution of their pieces is mixed into the model's:

    p(piece) = (1 - λ) p_model(piece) + λ p_taught(piece),   λ = MOST · ramp(similarity)

A reply rated bad (and not corrected) is kept the same way, as what not to say: where its
states are the nearest, its pieces are pushed away instead, p(piece) ∝ p_model(piece) (1 - λ'
p_shunned(piece)) with λ' = λ / MOST (1 on the same states: the piece it said is barred), so the
same message gets another reply at once, before any retraining.

A message worded like a taught one leads the decoder to states like the taught one's, so a
rewording finds it too; an unrelated message's states are far from every key and λ is 0: the
model speaks alone. The first state holds how the model means to begin its reply, not what the
message said: "I cleaned my room today." and "I lost my job today." both begin "Oh no, I'm
sorry", and their first states are as near as a rewording's. A taught reply the model would not
have begun as it does ("Nice! A clean room feels great.") is what the model has no state for,
and its neighbours are messages the model answers the way it answered this one, not messages
this reply answers: such a reply is followed only by its own message, in any conversation (or
from a similarity `ALONE`, for a model whose states were measured to tell such messages apart).
The turns before a message move its first state towards the replies said in them, so the
replies a message may follow are chosen by the message read without its turns.
The memory is built from the log (`Storage.taught`) when a model first replies, and again after
any correction or rating, so the log stays the only record. What a model learned by `chatbot
retrain` stays in its memory: rewordings the retrained model alone does not answer still are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from chatbot.decoding.loop import teacher_forced
from chatbot.decoding.rules import Context, Rule
from chatbot.engine import int8
from chatbot.modeldir import TAUGHT_GATES
from chatbot.tokenizer import EOS, PAD

START = 0.6  # cosine similarity of a message's first state to a taught one's from which it may follow it
NEAR = 0.7  # cosine similarity from which a taught reply's pieces are mixed in at all
SAME = 0.85  # ... and from which they are mixed in fully (MOST)
MOST = 0.95  # the largest share of the distribution a taught reply takes
NEIGHBOURS = 4  # keys each step's distribution is made of
TEMPERATURE = 0.01  # of the softmax over the neighbours' similarities
CANDIDATES = 8  # taught replies a message may follow, chosen at its first step
COARSE = 2048  # readings from which that choice searches an int8 copy of their first keys ...
SHORTLIST = 32  # ... and compares the nearest this many exactly
FIT = 2.0  # a key's similarity is lowered by FIT times how much less near the message came to its reply
MAX_PIECES = 200  # of a taught reply (decoding writes no more)
UNEXPECTED = 0.02  # a taught reply whose first piece the model gave less than this after its message ...
ALONE = 1.0  # ... is followed by its own message, or from this similarity (1: its own message only)


@dataclass
class TaughtReply:
    id: int  # the reply's message id in the log
    message: str
    reply: str
    context: list[str]
    shunned: bool = False  # rated bad: what not to say
    own_only: bool = False  # followed for its own message alone, as a reply the model would not have begun so


class Table(NamedTuple):
    """A memory's contents at one moment; replaced whole when replies are added, so a reply being
    decoded reads one consistent table."""

    replies: tuple[TaughtReply, ...]
    keys: torch.Tensor  # (N, A) unit length
    values: torch.Tensor  # (N,) the piece after each state
    owner: torch.Tensor  # (N,) the taught reply (index into `replies`) each key came from
    starts: torch.Tensor  # (M,) each reading's first key: what a message is matched by
    firsts: torch.Tensor  # (M, A) those keys, gathered once
    ends: torch.Tensor  # (M,) one past each reading's last key
    ids: torch.Tensor  # (number of replies,) each taught reply's log id
    unexpected: torch.Tensor | None = None  # (M,) bool: a reading the model would not have begun so (`ALONE`)
    shunned: torch.Tensor | None = None  # (number of replies,) bool: rated bad, pushed away from; None: none
    said: tuple[tuple[int, ...], ...] = ()  # each taught reply's message, its own pieces
    coarse: Callable | None = None  # x (U, A) -> x @ firsts.T from int8 firsts, for a large table (`COARSE`)


class Memory:
    """The taught replies' states (a `Table`) and the gates of λ."""

    def __init__(self, attentional_size: int, start=START, near=NEAR, same=SAME, alone=ALONE, most=MOST):
        self.start, self.near, self.same, self.alone, self.most = start, near, same, alone, most  # the gates of λ
        self.you: int | None = None  # the mark before the person's turns, in a model that reads turns
        self.engine = None  # the model its states were read by: a message is read alone by it too
        empty = torch.zeros(0, dtype=torch.long)
        self.table = Table(
            (), torch.zeros(0, attentional_size), empty, empty, empty, torch.zeros(0, attentional_size), empty, empty,
            torch.zeros(0, dtype=torch.bool),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.table.replies)

    def rule(self) -> Taught:
        """The decoding rule that follows this memory, for one reply (`chatbot.decoding.rules`)."""
        return Taught(self)

    @torch.inference_mode()
    def add(self, engine, tokenizer, taught: list[TaughtReply], batch: int = 64) -> None:
        """Read each taught reply after its message (with the turns it read, and alone: a later
        conversation's turns differ) and keep its states."""
        from chatbot.decoding.replies import prepare

        self.you = tokenizer.speakers[0] if engine.cfg.context_turns and tokenizer.speakers else None
        self.engine = engine
        replies, keys, values, owner, starts, unexpected = list(self.table.replies), [], [], [], [], []
        first = len(self.table.values)
        for begin in range(0, len(taught), batch):
            sources, targets, owners, capitals = [], [], [], []
            for t in taught[begin : begin + batch]:
                pieces = tokenizer.encode(t.reply)[: MAX_PIECES - 1] + [EOS]
                capital = capitalised_opener(tokenizer, t.reply)
                for context in [t.context, []] if t.context and engine.cfg.context_turns else [[]]:
                    sources.append(prepare(tokenizer, engine, t.message, context)[0])
                    targets.append(pieces)
                    owners.append(len(replies))
                    capitals.append(capital)
                replies.append(t)
            states, openers = read_states(engine, sources, targets, capitals)
            for who, target, state, opener in zip(owners, targets, states, openers):
                starts.append(first)
                unexpected.append(opener < UNEXPECTED or replies[who].own_only)
                first += len(target)
                keys.append(torch.nn.functional.normalize(state.float(), dim=-1))
                values.append(torch.tensor(target))
                owner.append(torch.full((len(target),), who))
        if not keys:
            return
        old = self.table
        all_keys, all_starts = torch.cat([old.keys, *keys]), torch.cat([old.starts, torch.tensor(starts)])
        firsts = all_keys[all_starts]
        coarse = int8.Int8Linear(firsts, None).product if len(firsts) >= COARSE and int8.available() else None
        self.table = Table(
            tuple(replies),
            all_keys,
            torch.cat([old.values, *values]),
            torch.cat([old.owner, *owner]),
            all_starts,
            firsts,
            torch.cat([all_starts[1:], torch.tensor([len(all_keys)])]),
            torch.tensor([r.id for r in replies], dtype=torch.long),
            torch.cat([old.unexpected, torch.tensor(unexpected, dtype=torch.bool)]),
            torch.tensor([r.shunned for r in replies]) if any(r.shunned for r in replies) else None,
            old.said + tuple(tuple(tokenizer.encode(t.message)) for t in taught),
            coarse,
        )


def read_states(
    engine, sources: list[list[int]], targets: list[list[int]], also: list[int] | None = None
) -> tuple[list[torch.Tensor], list[float]]:
    """The decoder's attentional state before each piece of each target (teacher forcing):
    (len(target), A) per pair; and the probability the model gave each target's first piece, or
    the piece `also` names for it where that is likelier (`capitalised_opener`)."""
    feeds, openers = [], None
    for logits, feed, target in teacher_forced(engine, sources, targets):
        if openers is None:
            odds = torch.softmax(logits.float(), dim=-1)
            openers = odds.gather(1, target.unsqueeze(1)).squeeze(1)
            if also is not None:
                other = torch.tensor(also, device=odds.device).unsqueeze(1)
                openers = torch.maximum(openers, odds.gather(1, other).squeeze(1))
            openers = openers.tolist()
        feeds.append(feed)
    stacked = torch.stack(feeds, dim=1).cpu()  # (B, T, A)
    return [stacked[i, : len(target)] for i, target in enumerate(targets)], openers


def capitalised_opener(tokenizer, reply: str) -> int:
    """The first piece of `reply` begun with a capital letter. A person who types in lower case
    ("my name is juniper") begins a reply as the model would ("My"): judged by its own first piece
    ("my", rare at a reply's start), nearly every such correction would count as one the model
    would not have begun so (`UNEXPECTED`)."""
    return (tokenizer.encode(reply[:1].upper() + reply[1:])[:1] or [EOS])[0]


def log_add_exp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) of two Python floats, -inf allowed."""
    high = max(a, b)
    return high if high == -math.inf else high + math.log1p(math.exp(-abs(a - b)))


def at(table: torch.Tensor, rows, pieces: torch.Tensor) -> torch.Tensor:
    """table[rows] at `pieces` ((r, n), a row's own per row), without copying the rows."""
    return table.gather(1, pieces) if isinstance(rows, slice) else table[rows.unsqueeze(1), pieces]


def mix_in(table: torch.Tensor, rows, scale: torch.Tensor, pieces: torch.Tensor, values: torch.Tensor) -> None:
    """In place: `scale` ((r, 1)) added to the rows `rows` of `table` (a slice of all, or their
    indices), then their `pieces` set to `values` ((r, n)). The loop's own tensors, made anew each
    step, are changed where they lie: a copy of every row's distribution costs more than the rest
    of the rule together."""
    if isinstance(rows, slice):
        table.add_(scale).scatter_(1, pieces, values)
    else:
        table.add_(scale.new_zeros(len(table), 1).index_copy_(0, rows, scale))  # 0 on the other rows
        table[rows.unsqueeze(1), pieces] = values


def kept_to_message(config: dict) -> set[tuple[int, str]]:
    """(reply id, taught text) of the corrections `chatbot retrain` left to the memory as replies
    its parent would not have begun so: followed for their own message alone, even where the
    retrained model's states would now begin them so."""
    return lineage_entries(config, "kept_to_message")


def lineage_entries(config: dict, key: str) -> set[tuple[int, str]]:
    """(reply id, taught text) of each entry of a list in a model's lineage (`chatbot retrain`)."""
    return {(entry["id"], entry["reply"]) for entry in config.get("lineage", {}).get(key, [])}


def gates_of(config: dict) -> dict[str, float]:
    """The gates of λ a model's config.json sets in its "taught" table (`start`, `near`, `same`):
    cosines depend on the model's states, so each model may have its own, chosen by
    `bench/taught_gates.py` on facts the teaching bench does not use. Unset: the constants above."""
    table = config.get("taught", {})
    return {name: float(table[name]) for name in TAUGHT_GATES if name in table}


def memory_from_log(engine, tokenizer, rows: list[dict], config: dict | None = None) -> Memory | None:
    """A memory of what the log taught (`Storage.taught` rows, those this model answers), as
    `engine` reads it, behind the model's gates (`gates_of`), with what retraining kept to its
    message so (`kept_to_message`); both from its `config`. What a retrained model learned stays
    in it: the model says it to the message it was taught for, and the memory to rewordings the
    model alone does not answer (docs/teaching.md). None when the log taught nothing."""
    config = config or {}
    kept = kept_to_message(config)
    memory = Memory(engine.cfg.attentional_size, **gates_of(config))
    taught = [
        TaughtReply(
            r["id"], r["message"], r["reply"], r["context"], r.get("shunned", False), (r["id"], r["reply"]) in kept
        )
        for r in rows
    ]
    memory.add(engine, tokenizer, taught)
    return memory if len(memory) else None


def nearest_firsts(table: Table, states: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosines (U, count) of each state's `count` nearest first keys, and those readings. A
    large table searches an int8 copy of them, a quarter of the bytes to read, and compares the
    `SHORTLIST` nearest exactly: the order differs from an exact search only among keys whose
    cosines lie within the int8 rounding of each other."""
    if table.coarse is None:
        return (states @ table.firsts.T).topk(count, dim=-1)
    shortlist = table.coarse(states).topk(min(max(SHORTLIST, count), len(table.firsts)), dim=-1).indices  # (U, s)
    exact = torch.bmm(table.firsts[shortlist], states.unsqueeze(2)).squeeze(2)  # (U, s)
    best, order = exact.topk(count, dim=-1)
    return best, shortlist.gather(1, order)


class Near(NamedTuple):
    """The keys a message may follow, gathered once at its first step."""

    keys: torch.Tensor  # (K,) key ids into the table
    states: torch.Tensor  # (K, A) those keys
    values: torch.Tensor  # (K,) the piece after each
    ids: torch.Tensor  # (K,) the log id of each key's taught reply
    shunned: torch.Tensor | None  # (K,) bool: from a reply rated bad; None when none is
    offset: torch.Tensor  # (R, K) added to each key's similarity for each row: see `Taught.candidates`
    openers: torch.Tensor  # the first pieces of the taught replies near: a reply begun otherwise follows none
    opening: frozenset[int]  # ... the same, to look one row's first piece up without a tensor
    piece_of: list[int]  # `values` as Python numbers, for `Taught.one_row`
    reply_of: list[int]  # `ids` as Python numbers


class Taught(Rule):
    """The memory's pieces mixed into each step's distribution (see the module's docstring).
    At the first step each message picks the taught replies it may follow (its state near their
    first key); later steps search only those replies' keys, each counted the less near the less
    near the message came to its reply, so two taught replies that start alike ("My name is ...",
    "My favorite color is ...") are not spliced into one ("My name is teal."); and a row whose
    reply began with a piece that no taught reply near begins with follows none of them (the
    model's own "Your name is" does not end in a taught "Juniper."). `ctx.taught` gets,
    per row, the weight λ (negative where a shunned reply's pieces were pushed away) and the reply's log id,
    for the walk-through and the inside view."""

    def __init__(self, memory: Memory):
        self.memory, self.table, self.near = memory, memory.table, None  # one table for the whole reply

    def __call__(self, logp: torch.Tensor, ctx: Context) -> torch.Tensor:
        memory = self.memory
        if ctx.step == 0:
            self.near = self.candidates(torch.nn.functional.normalize(ctx.query.float().cpu(), dim=-1), ctx.source)
        near = self.near
        if near is None:
            return logp
        # a taught reply is followed from its first piece, not spliced onto another
        if ctx.step and ctx.reply is not None and ctx.reply[0] not in near.opening:
            return logp
        if len(logp) == 1 and near.shunned is None:
            return self.one_row(logp, ctx, near)
        query = torch.nn.functional.normalize(ctx.query.float().cpu(), dim=-1)  # (R, A)
        sims = torch.addmm(near.offset, query, near.states.T)  # (R, K) cosines, each key's offset added
        top, index = sims.topk(min(NEIGHBOURS, sims.size(1)), dim=-1)  # (R, n)
        # λ = MOST · ramp(similarity of the nearest): 0 below NEAR, MOST from SAME
        weight = (top[:, 0] - memory.near).mul_(memory.most / (memory.same - memory.near)).clamp_(0.0, memory.most)
        if ctx.step and ctx.reply is None:  # ... in each row
            weight = weight.masked_fill(~torch.isin(ctx.replies()[:, 0].cpu(), near.openers), 0.0)
        if not bool(weight.any()):
            return logp
        shunned = None if near.shunned is None else near.shunned[index]  # (R, n) neighbours from a reply rated bad
        pushing = None  # (R,) the nearest decides: follow taught pieces, or push shunned ones away
        if shunned is not None and bool(shunned[:, 0].any()):  # ... only on the shunned reply's own path
            off_path = shunned[:, 0] & ~self.on_path(near.keys[index[:, 0]], ctx)
            weight, pushing = weight.masked_fill(off_path, 0.0), shunned[:, 0] & ~off_path
        signed = weight if pushing is None else torch.where(pushing, -weight, weight)
        ctx.taught = (signed.tolist(), near.ids[index[:, 0]].tolist())
        # the rows a taught reply weighs in on: all of them, most often
        rows = slice(None) if len(weight) == 1 or bool(weight.gt(0).all()) else weight.gt(0).nonzero().squeeze(1)
        w = weight[rows].unsqueeze(1)  # (r, 1)
        pieces = near.values[index[rows]]  # (r, n) the neighbours' pieces
        logits = top[rows] / TEMPERATURE  # (r, n)
        if shunned is not None:  # the neighbours that count: of the nearest's kind
            kind = shunned[:, 0] if pushing is None else pushing
            logits = logits.masked_fill(shunned[rows] != kind[rows].unsqueeze(1), float("-inf"))
        share = torch.softmax(logits, dim=-1)  # (r, n)
        p_taught = ((pieces.unsqueeze(2) == pieces.unsqueeze(1)) * share.unsqueeze(1)).sum(-1)  # (r, n) per piece
        if logp.device != w.device:  # the table is on the CPU, a GPU's distribution is not
            w, pieces, p_taught = w.to(logp.device), pieces.to(logp.device), p_taught.to(logp.device)
            rows = rows if isinstance(rows, slice) else rows.to(logp.device)
        at_model = at(logp, rows, pieces)  # (r, n) the neighbours' pieces as the model gives them
        # p = (1 - λ) p_model + λ p_taught: every piece scaled by 1 - λ, the neighbours' pieces raised
        scale = torch.log1p(-w)  # (r, 1) added to every piece's log-probability
        at_pieces = torch.logaddexp(at_model + scale, torch.log(w * p_taught))  # (r, n)
        if pushing is not None and bool(pushing[rows].any()):
            # p ∝ p_model (1 - λ' p_shunned): the neighbours' pieces lowered, all renormalised
            away = pushing[rows].unsqueeze(1).to(logp.device)  # (r, 1) rows pushed away from a shunned reply
            full = w / memory.most  # (r, 1) λ' = 1 where the states are the same: a piece said alone is barred
            lowered = at_model + torch.log1p(-full * p_taught)  # (r, n)
            log_z = logp[rows].scatter(1, pieces, lowered).logsumexp(-1, keepdim=True)  # (r, 1)
            scale = torch.where(away, -log_z, scale)
            at_pieces = torch.where(away, lowered - log_z, at_pieces)
        raised = None if ctx.gain is None else at(ctx.gain, rows, pieces) + at_pieces - at_model  # (r, n)
        mix_in(logp, rows, scale, pieces, at_pieces)
        if ctx.gain is not None:  # what the message adds now includes what it was taught
            mix_in(ctx.gain, rows, scale, pieces, raised)
        return logp

    def one_row(self, logp: torch.Tensor, ctx: Context, near: Near) -> torch.Tensor:
        """The rule above for a lone row (a greedy reply) with no reply rated bad near, in Python
        numbers where the rows' form makes (1, n) tensors: a one-row step pays per tensor
        operation, not per number, so this form counts them. The same distribution
        (tests/test_taught.py holds them equal)."""
        memory = self.memory
        query = ctx.query[0]  # (A,) the loop's own: not changed in place
        if query.dtype != torch.float32 or query.device.type != "cpu":
            query = query.float().cpu()
        norm = math.sqrt(float(query.dot(query)))  # (a dot product costs a third of `norm`)
        sims = torch.addmv(near.offset[0], near.states, query, alpha=1.0 / max(norm, 1e-12))  # (K,) cosines + offsets
        top, index = (t.tolist() for t in sims.topk(min(NEIGHBOURS, len(sims))))
        weight = min(max((top[0] - memory.near) * memory.most / (memory.same - memory.near), 0.0), memory.most)
        if weight <= 0.0:
            return logp
        ctx.taught = ([weight], [near.reply_of[index[0]]])
        shares = [math.exp((s - top[0]) / TEMPERATURE) for s in top]  # the softmax over the neighbours ...
        total = sum(shares)
        p_taught: dict[int, float] = {}  # ... summed per piece (a share too small for a float adds nothing)
        for key, share in zip(index, shares):
            if share > 0.0:
                piece = near.piece_of[key]
                p_taught[piece] = p_taught.get(piece, 0.0) + share / total
        scale = math.log1p(-weight)
        row, gain = logp[0], None if ctx.gain is None else ctx.gain[0]  # (V,) views
        at_model = [float(row[piece]) for piece in p_taught]  # the neighbours' pieces as the model gives them
        row.add_(scale)  # every piece scaled by 1 - λ, the neighbours' pieces then raised
        if gain is not None:
            gain.add_(scale)
        for (piece, p), model in zip(p_taught.items(), at_model):
            mixed = log_add_exp(model + scale, math.log(weight * p))
            row[piece] = mixed
            if gain is not None:  # what the message adds now includes what it was taught
                gain[piece] += mixed - scale - model
        return logp

    def messages(self, source: torch.Tensor, rows: list[int]) -> list[tuple[int, ...]]:
        """Each given row's own message: its source's pieces after the last mark of the person's
        turns (the whole source, in a model that reads no turns), padding left out."""
        out = []
        for row in source[rows].tolist():
            pieces = [p for p in row if p != PAD]
            you = self.memory.you
            if you is not None and you in pieces:
                pieces = pieces[len(pieces) - pieces[::-1].index(you) :]
            out.append(tuple(pieces))
        return out

    def read_alone(self, said: list[tuple[int, ...]], source: torch.Tensor) -> torch.Tensor | None:
        """(U, A) unit: the first state of each message (`said`, its own pieces) read without the
        turns before it; None when no row read any (its state is already that one)."""
        memory = self.memory
        if memory.you is None or memory.engine is None:
            return None
        alone = [[memory.you, *pieces] for pieces in said]
        read = [[p for p in row if p != PAD] for row in source.tolist()]
        if all(row in alone for row in read):
            return None
        states, _ = read_states(memory.engine, alone, [[EOS]] * len(alone))
        return torch.nn.functional.normalize(torch.cat(states).float(), dim=-1)

    def on_path(self, key: torch.Tensor, ctx: Context) -> torch.Tensor:
        """(R,) bool: whether each row's reply so far is its key's reading up to that key (a
        shunned reply is pushed away from where it would be said again: at its first piece for
        the message it answered, and further only while a reply follows it piece by piece)."""
        table = self.table
        reading = torch.searchsorted(table.starts, key.contiguous(), right=True) - 1  # (R,) the reading of each key
        position = key - table.starts[reading]  # (R,) the piece it comes before
        so_far = ctx.replies().cpu()  # (R, step)
        return torch.tensor(
            [
                int(p) == ctx.step and torch.equal(table.values[int(k) - ctx.step : int(k)], row)
                for k, p, row in zip(key, position, so_far)
            ]
        )

    def candidates(self, query: torch.Tensor, source: torch.Tensor) -> Near | None:
        """The keys of the taught replies each row's message (`source`, (R, S)) may follow
        (`Near`); None when no message is near any. The rows of one message start from one state:
        each distinct state is compared once."""
        table = self.table
        if not len(table.replies):
            return None
        if len(query) == 1:  # one row, one state (a greedy reply)
            states, row_state = query, torch.zeros(1, dtype=torch.long)
        else:
            states, row_state = torch.unique(query, dim=0, return_inverse=True)  # (U, A), (R,)
        first_row: dict[int, int] = {}  # each state's first row
        for row, state in enumerate(row_state.tolist()):
            first_row.setdefault(state, row)
        said = self.messages(source, [first_row[u] for u in range(len(states))])
        alone = self.read_alone(said, source)  # (U, A), or None: no row read turns before its message
        # the taught replies a message may follow are chosen by the message itself: the turns before
        # it move its state towards the replies said in them ("where do you work?" after "I live in
        # Busan." begins as a reply about where one lives would)
        best, which = nearest_firsts(table, states if alone is None else alone, min(CANDIDATES, len(table.firsts)))
        # (U, c) each state's own cosines to those first keys, turns read
        with_turns = best if alone is None else torch.bmm(table.firsts[which], states.unsqueeze(2)).squeeze(2)
        owners = table.owner[table.starts[which]]  # (U, c) the taught replies near each state
        memory, unexpected = self.memory, table.unexpected
        own = torch.zeros_like(best, dtype=torch.bool)  # (U, c) the reading was taught for this very message
        gate = memory.start  # how near each reading must be to be followed ...
        if unexpected is not None and bool(unexpected[which].any()):  # ... `alone` for a reply the model would
            # not have begun so, unless the message is the one it was taught for
            own = torch.tensor([[said[u] == table.said[o] for o in row] for u, row in enumerate(owners.tolist())])
            gate = torch.where(unexpected[which], torch.where(own, -2.0, memory.alone), memory.start)
        near = best >= gate  # (U, c)
        if not bool(near.any()):
            return None
        readings = torch.unique(which[near])  # the readings some row may follow
        spans = zip(table.starts[readings].tolist(), table.ends[readings].tolist())
        keys = torch.cat([torch.arange(start, end) for start, end in spans])  # (K,)
        match = (table.owner[keys].view(1, 1, -1) == owners.unsqueeze(-1)) & near.unsqueeze(-1)  # (U, c, K)
        allowed = match.any(1)  # (U, K) a key of some taught reply near the state
        shunned = None if table.shunned is None else table.shunned[table.owner[keys]]
        if shunned is not None and not bool(shunned.any()):
            shunned = None
        # the message counts as come fully to a reply taught for it, and to another as near as it
        # came read alone: its turns before may move its states
        came = torch.where(own, 1.0, best)  # (U, c)
        fit, raw = (c.unsqueeze(-1).masked_fill(~match, -1.0).amax(1) for c in (came, with_turns))  # (U, K)
        # a key's similarity is raised by what the message counts as more than its state shows, lowered
        # by FIT times how much less near the message came to its reply than to the nearest (a reply
        # followed is finished in its own words, not another's), and out of reach (below any cosine)
        # where it is another message's
        offset = ((fit - raw).clamp(min=0.0) + FIT * (fit - came.amax(1, keepdim=True))).masked_fill(~allowed, -3.0)
        offset = offset[row_state]
        openers = torch.unique(table.values[table.starts[readings]])
        values, ids = table.values[keys], table.ids[table.owner[keys]]
        return Near(
            keys, table.keys[keys], values, ids, shunned, offset, openers, frozenset(openers.tolist()), values.tolist(),
            ids.tolist(),
        )  # fmt: skip
