"""What a decode chose, step by step, and the hypotheses read back from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from chatbot.decoding.ranking import largest

TOP_ALTERNATIVES = 5  # alternatives kept per reply piece, for the "inside the model" view


@dataclass
class Hypothesis:
    """One reply as decoding found it, in piece ids."""

    tokens: list[int]  # end-of-sequence excluded
    logprobs: list[float]  # of each chosen piece (and of EOS, last, when it ended), as the strategy chose from
    attention: list[list[float]]  # (pieces + EOS) x (message pieces)
    alternatives: Sequence  # per step, the top pieces: (id, log-probability), best first
    score: float  # what the strategy ranks it by: the summed log-probabilities, unless it says otherwise
    finished: bool  # False when it ran to the maximum length
    gains: list[float] | None  # per piece: log p(piece | message) - log p(piece | no message), where measured
    rows: list[int] = field(default_factory=list)  # the row it held at each step, as observers saw it
    likelihood: float | None = None  # beam search: the length-normalised log-probability, before any rerank
    agreement: float | None = None  # consensus sampling: its agreement with the model's other replies
    candidates: list[tuple[list[int], float, str]] | None = None  # consensus: every candidate, its agreement and
    # flaw ("": none; else why it was ranked after the flawless), best first
    finalists: list[Hypothesis] | None = None  # beam search: every finished hypothesis, ranked

    def cut(self, n: int) -> None:
        """Shorten an unfinished hypothesis to its first `n` pieces (those that make whole characters)."""
        self.tokens, self.logprobs, self.attention = self.tokens[:n], self.logprobs[:n], self.attention[:n]
        self.alternatives = self.alternatives[:n]
        if self.gains is not None:
            self.gains = self.gains[:n]


class Alternatives(Sequence):
    """A reply's top pieces at each step, (piece id, log-probability) best first, ranked when first
    read. Greedy decoding and sampling rank nothing to choose a piece, and ranking inside the step
    cost more than ranking all steps at the end: the reply is ready without it, and the chat reads
    the alternatives only after showing the reply. Until then it holds the reply's distributions
    (one row of the vocabulary a step); replies to a batch of messages are ranked at once instead."""

    def __init__(self, logps: torch.Tensor):
        self.logps, self.ranked = logps, None  # (steps, V)

    def _rank(self) -> list[list[tuple[int, float]]]:
        if self.ranked is None:
            values, ids = self.logps.topk(min(TOP_ALTERNATIVES, self.logps.size(-1)), dim=-1)
            self.ranked, self.logps = [list(zip(i, v)) for i, v in zip(ids.tolist(), values.tolist())], None
        return self.ranked

    def __getitem__(self, index):
        return self._rank()[index]

    def __len__(self) -> int:
        return len(self.ranked) if self.ranked is not None else self.logps.size(0)

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return repr(self._rank())


class Trace:
    """What every step chose, with back-pointers: at step t, row r took token tokens[t][r] after
    row parents[t][r] of the step before (itself when parents[t] is None). Beam search reorders
    only the token history the rules read; a hypothesis is read back by following its pointers.

    `rank_each_step`: keep each step's top alternatives as it goes (rows that move, or many rows);
    otherwise keep the distributions and rank them when read (`Alternatives`). `shown` (an index of
    the R rows: a bool mask, ids or a slice): the rows that may become replies, the only ones
    ranked (consensus's evidence rows never are)."""

    def __init__(self, rows: int, device, rank_each_step: bool, shown=None):
        self.rows, self.rank_each_step, self.shown = rows, rank_each_step, shown
        self.reply = [] if rows == 1 else None  # one row: its reply so far as a list (the rules read it so)
        self.history = None if rows == 1 else torch.zeros((rows, 0), dtype=torch.long, device=device)  # (R, t)
        self.parents, self.tokens, self.logps = [], [], []  # per step: (R,) or None, (R,), (R,)
        self.attention, self.alt_ids, self.alt_logps = [], [], []  # per step, by parent row: (R, S), (R, A), (R, A)
        self.unranked = []  # per step (R, V): log-probabilities, stacked by `finish`; alternatives ranked when read
        self.gains = []  # per step (R,): how much the message raised the chosen piece's log-probability
        self.kept = None  # after `keep_rows`: the rows kept, as the observers saw them

    def extend(self, chosen, logp, weights, rows=None, gain=None, top=None) -> None:
        """Row i continues row rows[i] (row i itself when rows is None) with token chosen[i]; the
        step's outputs (logp, weights, gain) are indexed by parent row; `top`, logp.topk the
        strategy ranked already, if it did."""
        if self.reply is not None:
            self.reply.append(chosen.item())
        else:
            history = self.history if rows is None else self.history[rows]
            self.history = torch.cat([history, chosen.unsqueeze(1)], dim=1)
        if gain is not None:  # (R, V) by parent row, like logp
            self.gains.append(gain.gather(1, chosen.unsqueeze(1)).squeeze(1) if rows is None else gain[rows, chosen])
        self.parents.append(rows)
        self.tokens.append(chosen)
        self.attention.append(weights)
        if not self.rank_each_step:  # rows is None too: read the chosen tokens' log-probabilities at the end
            self.unranked.append(logp)
            return
        self.logps.append(logp.gather(1, chosen.unsqueeze(1)).squeeze(1) if rows is None else logp[rows, chosen])
        if self.shown is not None:
            A = min(TOP_ALTERNATIVES, logp.size(-1))
            values, ids = largest(logp[self.shown], A)
            alt_ids = torch.zeros((self.rows, A), dtype=ids.dtype, device=ids.device)
            alt_logps = torch.zeros((self.rows, A), dtype=values.dtype, device=values.device)
            alt_ids[self.shown], alt_logps[self.shown] = ids, values
            self.alt_ids.append(alt_ids)
            self.alt_logps.append(alt_logps)
            return
        if top is None or top.indices.size(1) < TOP_ALTERNATIVES:
            top = logp.topk(min(TOP_ALTERNATIVES, logp.size(-1)), dim=-1)
        self.alt_ids.append(top.indices[:, :TOP_ALTERNATIVES])
        self.alt_logps.append(top.values[:, :TOP_ALTERNATIVES])

    def replies(self) -> list[list[int]]:
        """Each row's pieces so far."""
        return [list(self.reply)] if self.reply is not None else self.history.tolist()

    def keep_rows(self, rows: list[int]) -> None:
        """Keep these rows only, in this order (consensus sampling's chosen candidates: sampled
        rows never move, so each row's steps are its own)."""
        index = torch.tensor(rows, dtype=torch.long, device=self.tokens[0].device)
        self.rows = len(rows)
        for name in ("tokens", "attention", "logps", "alt_ids", "alt_logps", "unranked", "gains"):
            setattr(self, name, [step[index] for step in getattr(self, name)])
        self.kept = rows

    def finish(self) -> None:
        """Stack the steps, once, for reading hypotheses back: pointers, tokens and their
        log-probabilities as Python lists (every hypothesis walks them), attention and alternatives
        as tensors (only the rows of the hypotheses returned are ever read)."""
        identity = list(range(self.rows))
        self.parents = [identity if p is None else p.tolist() for p in self.parents]
        tokens = torch.stack(self.tokens)  # (T, R)
        self.attention = torch.stack(self.attention).float()  # (T, R, S)
        if self.unranked:  # greedy or sampling: no row ever moved
            logps = torch.stack(self.unranked)  # (T, R, V)
            self.logps = logps.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).tolist()
            if self.rows == 1:  # one message: its alternatives are ranked when read (`Alternatives`)
                self.unranked = logps
            else:  # a batch: ranked now in one call, rather than every row's distributions kept alive
                self.alt_logps, self.alt_ids = logps.topk(min(TOP_ALTERNATIVES, logps.size(-1)), dim=-1)  # (T, R, A)
        else:
            self.logps = torch.stack(self.logps).tolist()
            self.alt_ids, self.alt_logps = torch.stack(self.alt_ids), torch.stack(self.alt_logps)  # (T, R, A)
        self.tokens = tokens.tolist()
        self.gains = torch.stack(self.gains).tolist() if self.gains else None

    def hypothesis(
        self, row: int, last_step: int, length: int, finished: bool, score: float | None = None
    ) -> Hypothesis:
        """The reply held by `row` after step `last_step`: `length` tokens, plus the EOS step when it
        finished; score defaults to the sum of its log-probabilities."""
        keep = length + 1 if finished else length
        seen = self.kept  # rows renumbered by `keep_rows`: as the observers saw them
        if isinstance(self.unranked, torch.Tensor):  # one message, greedy or sampling: the row never moved
            rows = parents = [row] * (last_step + 1)
            attention = self.attention[:keep, row].tolist()
            alternatives = Alternatives(self.unranked[:keep, row])
        else:
            rows, parents = [], []  # per step, from the last back to the first
            for t in range(last_step, -1, -1):
                rows.append(row)
                row = self.parents[t][row]
                parents.append(row)
            rows.reverse()
            parents.reverse()
            steps = list(range(keep))
            attention = self.attention[steps, parents[:keep]].tolist()
            ids, values = self.alt_ids[steps, parents[:keep]].tolist(), self.alt_logps[steps, parents[:keep]].tolist()
            alternatives = [list(zip(i, v)) for i, v in zip(ids, values)]
        logprobs = [self.logps[t][rows[t]] for t in range(keep)]
        return Hypothesis(
            tokens=[self.tokens[t][rows[t]] for t in range(length)],
            logprobs=logprobs,
            attention=attention,
            alternatives=alternatives,
            score=sum(logprobs) if score is None else score,
            finished=finished,
            gains=[self.gains[t][rows[t]] for t in range(keep)] if self.gains else None,
            rows=[seen[r] for r in parents] if seen else parents,  # the row that computed each step
        )
