"""The rules on log-probabilities that every strategy decodes under, each a small object.

`rules_for` composes them once from the settings (as transformers' LogitsProcessor list); the
loop calls them in order at every step, before the strategy picks. A rule takes the step's
log-probabilities (R, V), one row per hypothesis, and what it may read of the reply so far
(`Context`), and returns them changed (in place or anew). Each can be tried alone on a table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from chatbot.tokenizer import BOS, EOS, PAD, UNK, utf8_length

NEG_INF = float("-inf")


@dataclass
class Context:
    """What a rule may read at a step."""

    step: int  # pieces written so far
    source: torch.Tensor  # (R, S) each row's message
    history: torch.Tensor | None  # (R, step) each row's reply so far; None when `reply` holds the only row's
    reply: list[int] | None = None  # the only row's reply so far (one message, one row: the chat's case)
    message: list[int] | None = None  # ... and its message
    gain: torch.Tensor | None = None  # (R, V) log p(. | message) - log p(. | no message), where the loop measures it
    unforced: torch.Tensor | None = None  # what `Force` overrode at this step
    query: torch.Tensor | None = None  # (R, A) the decoder's attentional state: what the output layer read
    taught: tuple | None = None  # per row, the weight of taught pieces and the taught reply (`chatbot.taught`)
    whole: dict | None = None  # rows `WholeWords` held: row -> the one piece allowed, or None: the word ended

    def replies(self) -> torch.Tensor:
        """Each row's reply so far, (R, step)."""
        if self.history is None:
            self.history = torch.tensor([self.reply], dtype=torch.long, device=self.source.device).view(1, -1)
        return self.history


def guided(logp: torch.Tensor, unguided_gain: torch.Tensor, weight: float) -> torch.Tensor:
    """Guidance: log p(. | message) + w (log p(. | message) - log p(. | no message)),
    renormalised: pieces the message makes likelier gain, pieces likely whatever was said (the
    stock replies) lose. Evaluation scores replies with this same formula."""
    return torch.log_softmax(logp + weight * unguided_gain, dim=-1)


def only(logp: torch.Tensor, piece: int) -> torch.Tensor:
    """Log-probabilities that allow one piece and nothing else."""
    forced = torch.full_like(logp, NEG_INF)
    forced[:, piece] = 0.0
    return forced


def only_eos(logp: torch.Tensor) -> torch.Tensor:
    return only(logp, EOS)


class Rule:
    needs_gain = False  # the loop runs rows that read no message beside the real ones

    def __call__(self, logp: torch.Tensor, ctx: Context) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class Guidance(Rule):
    """Favour the pieces the message makes likelier (`guided`), by weight w."""

    weight: float
    needs_gain = True

    def __call__(self, logp, ctx):
        return guided(logp, ctx.gain, self.weight)


@dataclass
class NeverWrite(Rule):
    """Pieces never written: padding, unknown, start, and what the tokenizer says (control pieces)."""

    pieces: list[int]

    def __post_init__(self):
        self.default = self.pieces == [PAD, UNK, BOS]  # ids 0-2: a slice, cheaper than an index
        self.index = None

    def __call__(self, logp, ctx):
        if self.default:
            logp[:, PAD : BOS + 1] = NEG_INF
            return logp
        if self.index is None or self.index.device != logp.device:
            self.index = torch.tensor(self.pieces, dtype=torch.long, device=logp.device)
        return logp.index_fill_(1, self.index, NEG_INF)


@dataclass
class MinLength(Rule):
    """No end before `length` pieces."""

    length: int

    def __call__(self, logp, ctx):
        if ctx.step < self.length:
            logp[:, EOS] = NEG_INF
        return logp


@dataclass
class RepetitionPenalty(Rule):
    """Pieces already in the reply made less likely: their log-probability times `penalty` (> 1),
    renormalised (CTRL, Keskar et al. 2019)."""

    penalty: float

    def __call__(self, logp, ctx):
        if not ctx.step:
            return logp
        seen = ctx.replies()  # (R, t): only these entries change, so only they are read and written
        values = logp.gather(1, seen)
        values = torch.where(seen == EOS, values, values * self.penalty)  # the end is never a repeat
        return logp.scatter_(1, seen, values).log_softmax(-1)  # in place: the loop's own tensor


_MADE: dict = {}  # (what, the lists' ids, device) -> (the lists, kept so no other list takes their ids; what was made)


def made_once(what: str, lists: tuple[list, ...], device, make):
    """`make()`, the tables a rule builds from a tokenizer's per-piece lists, made once per list
    and device: a rule is made for every reply, and a table from a list of every piece costs as
    much as a reply's few steps."""
    key = (what, *map(id, lists), str(device))
    if key not in _MADE:
        if len(_MADE) >= 16:
            _MADE.clear()
        _MADE[key] = (lists, make())
    return _MADE[key][1]


def as_tensors(lists: tuple[list[bool], ...], device) -> tuple[torch.Tensor, ...]:
    """Per-piece lists as bool tensors (`made_once`)."""
    return made_once(
        "bools", lists, device, lambda: tuple(torch.tensor(m, dtype=torch.bool, device=device) for m in lists)
    )


def block_ngrams(logp: torch.Tensor, history: torch.Tensor, n: int, source: torch.Tensor | None) -> None:
    """Set to -inf, in place in logp (R, V), every token that would complete an n-gram already in
    `history` (R, t) or `source` (R, S)."""
    t = history.size(1)
    if n < 1 or t < n - 1:
        return
    prefix = history[:, t - (n - 1) :].unsqueeze(1)  # (R, 1, n-1)
    for seq in (history, source):
        if seq is None or seq.size(1) < n:
            continue
        windows = seq.unfold(1, n, 1)  # (R, W, n)
        match = (windows[:, :, : n - 1] == prefix).all(-1)  # (R, W)
        # the last token of each matching window gets min(its value, -inf); the others min(it, +inf)
        logp.scatter_reduce_(1, windows[:, :, n - 1], torch.where(match, NEG_INF, float("inf")), "amin")


def banned_continuations(history: list[int], n: int, source: list[int] | None) -> list[int]:
    """`block_ngrams` for one row, on Python lists: the tokens that would complete an n-gram
    already in `history` or `source`. For a single message (the chat's case) a scan of a few dozen
    ints costs a fraction of the ten small tensor ops the batched form takes."""
    if n < 1 or len(history) < n - 1:
        return []
    prefix = history[len(history) - (n - 1) :]
    return [
        seq[i + n - 1]
        for seq in (history, source or [])
        for i in range(len(seq) - n + 1)
        if seq[i : i + n - 1] == prefix
    ]


@dataclass
class NoRepeatNgram(Rule):
    """Never repeat an n-gram of the reply (nor, with `source`, one of the message)."""

    n: int
    source: bool = False

    def __call__(self, logp, ctx):
        if ctx.reply is not None:
            banned = banned_continuations(ctx.reply, self.n, ctx.message if self.source else None)
            if banned:
                logp[0, banned] = NEG_INF
            return logp
        block_ngrams(logp, ctx.history, self.n, ctx.source if self.source else None)
        return logp


class WholeWords(Rule):
    """A word of the conversation that the reply has begun to copy, two of its pieces or more,
    is written whole: while the word goes on, its next piece is the only one allowed, and once
    it has ended no piece of the conversation may go on it ("Marcu" becomes "Marcus", "Rexx"
    becomes "Rex"), while an ending the model writes itself may (a Korean particle: "이름" + "은").
    Copy attention points at the right word and often loses its place inside it. Words of one piece
    are the common ones, left to the model, but for a name: a capitalised word of one piece of the
    conversation, never going on there, takes no piece of the conversation after it either ("Sam"
    + "b" + "on" of "Lisbon": "Sambon"). After any capitalised piece, a piece of two characters or
    more that goes on the conversation's capitalised words, and on no other word there, may follow
    only a piece it follows there ("Li" + "ron" of "To ron to": "Lironto"). Where the conversation's
    words that begin so disagree (they go on differently, or one ends there), nothing is changed.
    `ctx.whole` gets each row held, for the walk-through."""

    NOTED = math.log(0.01)  # pieces barred after a name of one piece are noted from this probability

    def __init__(self, inside: list[bool], names: list[bool] | None = None, marks: list[bool] | None = None):
        self.inside = inside  # per piece id: goes on a word (`Tokenizer.word_inside`)
        self.names = names or [False] * len(inside)  # per piece id: starts a capitalised word (`Tokenizer.name_starts`)
        self.marks = marks or [False] * len(inside)  # per piece id: goes on a word, two characters or more
        self.masks: tuple[torch.Tensor, ...] | None = None  # (V,) the three, as tensors

    def __call__(self, logp, ctx):
        if ctx.step < 1:
            return logp
        if self.masks is None or self.masks[0].device != logp.device:
            self.masks = as_tensors((self.inside, self.names, self.marks), logp.device)
        inside, names, _ = self.masks
        last = ctx.history[:, -1] if ctx.reply is None else torch.tensor(ctx.reply[-1:], device=logp.device)
        capitalised = names[last].nonzero().flatten()
        if len(capitalised):
            self.bar_others_pieces(logp, ctx, capitalised, last[capitalised])
        if ctx.reply is not None:  # one row: plain lists
            self.note(ctx, 0, self.hold(logp, 0, ctx.reply, ctx.message))
            return logp
        at = ctx.source == last.unsqueeze(1)  # (R, S) where the last piece is in the row's source
        in_source = at.any(1)
        # rows whose last piece goes on a word of their source: held in Python, row by row (few)
        for row in (inside[last] & in_source).nonzero().flatten().tolist():
            self.note(ctx, row, self.hold(logp, row, ctx.history[row].tolist(), ctx.source[row].tolist()))
        # rows whose last piece is a name of one piece in their source, never going on there: no
        # piece of the source that goes on a word may follow it (all such rows at once: "I" is one)
        named = (names[last] & in_source).nonzero().flatten()
        if len(named):
            source, here = ctx.source[named], at[named]
            going_on = inside[torch.cat([source[:, 1:], torch.full_like(source[:, :1], PAD)], 1)]  # the next piece
            rows = named[(here & ~going_on).any(1) & ~(here & going_on).any(1)]
            source = ctx.source[rows]
            barred = torch.zeros(len(rows), logp.size(1), dtype=torch.bool, device=logp.device)
            barred.scatter_(1, source, inside[source])
            kept = logp[rows]
            noted = kept.masked_fill(~barred, NEG_INF).logsumexp(1) >= self.NOTED
            logp[rows] = kept.masked_fill(barred, NEG_INF)
            for row in rows[noted].tolist():
                self.note(ctx, row, None)
        return logp

    def bar_others_pieces(self, logp, ctx, rows: torch.Tensor, last: torch.Tensor) -> None:
        """Rows whose last piece starts a capitalised word: no piece that marks another capitalised
        word of their conversation ("ron" of "To ron to") may follow it, unless it follows that very
        piece there. A lower-case word is left alone ("un" + "fortunately" of "Unfortunately")."""
        inside, names, marks = self.masks
        source = ctx.source[rows]  # (r, S)
        position = torch.arange(source.size(1), device=source.device).expand_as(source)
        starts = ~inside[source]  # (r, S) a word (or a mark) begins here
        begins = torch.where(starts, position, 0).cummax(1).values  # (r, S) where each piece's word begins
        in_name = names[source].gather(1, begins) & ~starts  # (r, S) goes on a capitalised word
        mark = marks[source] & in_name  # (r, S)
        if not bool(mark.any()):
            return
        before = torch.cat([torch.full_like(source[:, :1], PAD), source[:, :-1]], 1)  # (r, S) the piece before
        free = (inside[source] & ~in_name) | (mark & (before == last.unsqueeze(1)))  # (r, S) may follow here
        V = logp.size(1)
        marked = torch.zeros(len(rows), V, device=logp.device).scatter_reduce_(1, source, mark.float(), "amax")
        allowed = torch.zeros(len(rows), V, device=logp.device).scatter_reduce_(1, source, free.float(), "amax")
        barred = (marked > 0) & (allowed == 0)  # (r, V)
        if not bool(barred.any()):
            return
        kept = logp[rows]
        at_barred = kept.masked_fill(~barred, NEG_INF)  # (r, V) the barred pieces alone
        noted = at_barred.logsumexp(1) >= self.NOTED
        logp[rows] = kept.masked_fill(barred, NEG_INF)
        for row, piece in zip(rows[noted].tolist(), at_barred.argmax(1)[noted].tolist()):
            self.note(ctx, row, ("mark", piece))

    @staticmethod
    def note(ctx, row: int, held) -> None:
        if held is not False:
            ctx.whole = ctx.whole or {}
            ctx.whole[row] = held

    def hold(self, logp: torch.Tensor, row: int, written: list[int], source: list[int]) -> int | None | bool:
        """Hold one row to the word it is copying: the one piece allowed, None where the word
        ended and nothing may go on it, False where the row is left alone."""
        inside = self.inside
        begin = len(written) - 1
        while begin >= 0 and inside[written[begin]]:
            begin -= 1
        word = written[begin:] if begin >= 0 else []
        if not word or (len(word) == 1 and not self.names[word[0]]):
            return False
        goes_on, ended = set(), False
        for i in range(len(source) - len(word) + 1):
            if source[i : i + len(word)] == word:
                after = source[i + len(word)] if i + len(word) < len(source) else None
                if after is not None and inside[after]:
                    goes_on.add(after)
                else:
                    ended = True
        if len(word) > 1 and len(goes_on) == 1 and not ended:
            (piece,) = goes_on
            if not bool(torch.isfinite(logp[row, piece])):
                return False  # another rule barred it (n-gram blocking): not forced
            logp[row] = only(logp[row : row + 1], piece)[0]
            return piece
        if ended and not goes_on:  # bar what copy attention would stutter: the conversation's word-inside pieces
            barred = [p for p in set(source) if inside[p]]  # a suffix the model writes itself stays ("이름" + "은")
            if not barred:
                return False
            noted = len(word) > 1 or float(logp[row, barred].logsumexp(0)) >= self.NOTED
            logp[row, barred] = NEG_INF
            return None if noted else False
        return False  # the conversation's words disagree: left to the model


# a lead byte's first continuation, where narrower than 80-BF: C2 80-9F are the C1 control
# characters (a terminal acts on them: 9B starts a command), E0 and F0 below these overlong, ED
# above this a surrogate, F4 above this beyond U+10FFFF
SECOND_BYTE = {0xC2: (0xA0, 0xBF), 0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}


class CharacterTables(NamedTuple):
    index: torch.Tensor  # the continuation bytes' piece ids
    is_byte: torch.Tensor  # (V,) bool: a byte piece
    seconds: dict[int, torch.Tensor]  # lead byte -> the piece ids of its first continuation, where narrower


def character_tables(values: list[int], device) -> CharacterTables:
    """`WholeCharacters`' tables for one tokenizer's `byte_values` (`made_once`)."""

    def make() -> CharacterTables:
        by_byte = {v: i for i, v in enumerate(values) if v >= 0}

        def ids(low: int, high: int) -> torch.Tensor:
            return torch.tensor(
                [by_byte[b] for b in range(low, high + 1) if b in by_byte], dtype=torch.long, device=device
            )

        is_byte = torch.tensor([v >= 0 for v in values], device=device)
        return CharacterTables(ids(0x80, 0xBF), is_byte, {lead: ids(*span) for lead, span in SECOND_BYTE.items()})

    return made_once("characters", (values,), device, make)


class WholeCharacters(Rule):
    """Byte pieces written as whole UTF-8 characters. A character the tokenizer never learned is
    spelled out in bytes ("닷" = <0xEB> <0x8B> <0xB7>); sampled freely, a lead byte can be followed
    by a piece that does not go on it, and the reply shows U+FFFD ("바�가"). So: a continuation
    byte only where a character needs one, and there only the continuation bytes that make a
    valid character (RFC 3629: no overlong forms, no surrogates; no C1 control), no end either, the model's own
    odds among them kept. (Bytes that begin no valid character are never written at all:
    `Tokenizer.never_written`.)"""

    def __init__(self, values: list[int]):
        self.values = values  # per piece id, its byte or -1 (`Tokenizer.byte_values`)
        self.tables: CharacterTables | None = None

    def __call__(self, logp, ctx):
        if self.tables is None or self.tables.index.device != logp.device:
            self.tables = character_tables(self.values, logp.device)
        index, is_byte = self.tables.index, self.tables.is_byte
        if not len(index):
            return logp
        needing = self.needing(ctx, is_byte) if ctx.step else []
        kept = [(row, ids, logp[row].index_select(0, ids)) for row, ids in needing]
        logp.index_fill_(1, index, NEG_INF)  # nowhere but inside a character ...
        for row, ids, odds in kept:  # ... where they are all that may follow
            if bool(torch.isfinite(odds).any()):  # (unless another rule barred every one)
                logp[row] = NEG_INF
                logp[row, ids] = odds
        return logp

    def needing(self, ctx, is_byte: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """The rows whose reply so far ends inside a character, each with the piece ids of the
        continuation bytes that may come next."""
        if ctx.reply is not None:  # one row: a plain list
            tails = [(0, ctx.reply[-3:])]
        else:
            rows = is_byte[ctx.history[:, -1]].nonzero().flatten().tolist()  # most steps: none
            tails = list(zip(rows, ctx.history[rows, -3:].tolist())) if rows else []
        return [(row, allowed) for row, tail in tails if (allowed := self.next_bytes(tail)) is not None]

    def next_bytes(self, written: list[int]) -> torch.Tensor | None:
        """For a reply's last pieces (up to three: a character is four bytes at most): None if
        they end no unfinished character; else the piece ids of the continuation bytes that may follow."""
        for back, piece in enumerate(reversed(written)):
            byte = self.values[piece]
            if byte < 0:
                return None
            if byte & 0xC0 != 0x80:  # a lead byte (or a one-byte character)
                if utf8_length(byte) - 1 <= back:
                    return None
                return self.tables.seconds.get(byte, self.tables.index) if back == 0 else self.tables.index
        return None


@dataclass
class Force(Rule):
    """What if the model had written this piece here: at each step of `pieces` ({step: piece id})
    only that piece is allowed. The log-probabilities it overrode stay in the context
    (`Context.unforced`), for the walk-through to show what the model would have chosen from."""

    pieces: dict[int, int]

    def __call__(self, logp, ctx):
        piece = self.pieces.get(ctx.step)
        if piece is None:
            return logp
        ctx.unforced = logp.clone()
        return only(logp, piece)


@dataclass
class EndAt(Rule):
    """The last position can only end the reply."""

    max_length: int

    def __call__(self, logp, ctx):
        return only_eos(logp) if ctx.step == self.max_length else logp


def rules_for(
    settings,
    guidance: float,
    banned: list[int],
    forced: dict[int, int] | None = None,
    taught=None,
    inside: list[bool] | None = None,
    names: list[bool] | None = None,
    marks: list[bool] | None = None,
    byte_values: list[int] | None = None,
) -> list[Rule]:
    """The rules a reply decodes under, in the order they apply: guidance (weight `guidance`,
    what the model allows: `guidance_of`), taught replies (`taught`, a `chatbot.taught.Memory`),
    the pieces never written, the minimum length, the repetition penalty, n-gram blocking, copied
    words written whole (with `inside`, the tokenizer's pieces that go on a word, `names`, those
    that start a capitalised one, and `marks`, those of `inside` of two characters or more), byte
    pieces as whole characters (`byte_values`, per piece its byte or -1), forced pieces, the maximum
    length."""
    rules: list[Rule] = [Guidance(guidance)] if guidance else []
    if taught is not None and len(taught):
        rules.append(taught.rule())
    rules.append(NeverWrite(list(banned)))
    if settings.min_length:
        rules.append(MinLength(settings.min_length))
    if settings.repetition_penalty != 1.0:
        rules.append(RepetitionPenalty(settings.repetition_penalty))
    if settings.no_repeat_ngram:
        rules.append(NoRepeatNgram(settings.no_repeat_ngram, settings.block_source_ngrams))
    if settings.whole_words and inside is not None:
        rules.append(WholeWords(inside, names, marks))
    if byte_values is not None:
        rules.append(WholeCharacters(byte_values))
    if forced:
        rules.append(Force(dict(forced)))
    rules.append(EndAt(settings.max_length))
    return rules


def guidance_of(engine, settings) -> float:
    """The guidance weight a reply runs with: the setting's, if the model learned replies to no
    message (`ModelConfig.guides`), else 0."""
    return settings.guidance if engine.cfg.guides else 0.0
