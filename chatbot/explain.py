"""A walk-through of one reply, step by step: the decode that replies, watched.

Seq2seq is taught in steps: the encoder reads the message piece by piece, keeping two streams
(the hidden state and the cell state); its last states become the decoder's first (the "context
vector"); at each step the decoder scores every encoder state against its own state, softmax
turns the scores into attention weights, their weighted sum is the context, and a softmax over
the vocabulary gives the next piece, fed back until `</s>`. Training feeds the true previous piece
instead (teacher forcing) and learns from the cross-entropy at each position.

`walk_through` runs the very decode a reply runs (`chatbot.decoding.reply`: the same engine and
precision, settings, seed and conversation) with an observer that keeps what each step computed:
the distribution the strategy chose from, the attention, the rows beam search kept. So the steps
shown are the steps of the reply shown. What the engine does not hand out (the encoder's states
piece by piece, the attention's raw scores, the context vector) is read from the reference
model's own modules (`chatbot/model.py`), fed the reply's pieces. `chatbot.explain_pages` shows
it all a page per step.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import replace

import torch

from chatbot.decoding import Step, prepare, reply
from chatbot.decoding.strategies import ranked_candidates, sampled_rows
from chatbot.engine import as_engine
from chatbot.model import Seq2Seq, pad_right
from chatbot.settings import MAX_SEED, Settings
from chatbot.tokenizer import BOS, EOS, Tokenizer

TOP = 5  # vocabulary pieces shown per step
LABELS = {  # every concept named in both languages
    "pieces": "조각 pieces",
    "encoder": "인코더 encoder",
    "decoder": "디코더 decoder",
    "hidden": "은닉 상태 hidden state",
    "cell": "셀 상태 cell state",
    "context_vector": "컨텍스트 벡터 context vector",
    "attention": "어텐션 attention",
    "teacher_forcing": "교사 강요 teacher forcing",
    "softmax": "소프트맥스 softmax",
    "cross_entropy": "교차 엔트로피 cross-entropy",
}


def rounded(t: torch.Tensor, digits: int = 4) -> list:
    return [round(float(x), digits) for x in t.flatten()]


def pieces_of(tokenizer: Tokenizer, ids: list[int]) -> tuple[list[dict], list[dict]]:
    """Each piece with its id, and the characters byte fallback spelled out (pieces the tokenizer
    lacks, as bytes)."""
    pieces = [{"id": i, "piece": tokenizer.pieces([i])[0], "byte": bool(tokenizer.sp.is_byte(i))} for i in ids]
    fallback, run = [], []
    for p in [*pieces, {"byte": False}]:
        if p["byte"]:
            run.append(p)
            continue
        if run:
            raw = bytes(int(q["piece"][3:5], 16) for q in run)
            fallback.append({"text": raw.decode("utf-8", "replace"), "pieces": [q["piece"] for q in run]})
            run = []
    return pieces, fallback


@torch.no_grad()
def encoder_steps(model: Seq2Seq, src: torch.Tensor) -> list[dict]:
    """Each layer's two directions reading the message one piece at a time through their own
    LSTM modules: the hidden and cell state after every piece (the backward direction reads from
    the last piece to the first)."""
    x = model.embed(src)  # (1, S, E)
    S, layers = src.size(1), []
    for layer in range(model.cfg.layers):
        streams = {}
        outputs = {}
        for name, lstm in (
            ("forward", model.encoder.forward_lstms[layer]),
            ("backward", model.encoder.backward_lstms[layer]),
        ):
            h = c = torch.zeros(1, 1, lstm.hidden_size, device=src.device)
            order = range(S) if name == "forward" else range(S - 1, -1, -1)
            steps, out = [], [None] * S
            for t in order:
                o, (h, c) = lstm(x[:, t : t + 1], (h, c))  # one piece: (1, 1, H/2)
                out[t] = o[:, 0]
                steps.append(
                    {
                        "position": t,
                        "h": rounded(h),
                        "c": rounded(c),
                        "h_norm": float(h.norm()),
                        "c_norm": float(c.norm()),
                    }
                )
            streams[name], outputs[name] = steps, torch.stack(out, 1)  # (1, S, H/2)
        layers.append(streams)
        x = torch.cat([outputs["forward"], outputs["backward"]], -1)  # (1, S, H): the next layer's input
    return layers


@torch.no_grad()
def read_step(model: Seq2Seq, token: int, state, memory, feed) -> dict:
    """The model's modules fed one given piece (teacher forcing), keeping what `Seq2Seq.step` does
    not return: the attention's raw scores and the context vector."""
    decoder = model.decoder
    x = model.embed(torch.tensor([token], device=model.device))  # (1, E)
    if model.cfg.input_feeding:
        x = torch.cat([x, feed], -1)
    out, state = decoder.lstm(x.unsqueeze(1), state)  # (1, 1, H)
    scores = decoder.attention.scores(out, memory)  # (1, 1, S)
    weights = torch.softmax(scores, -1)  # (1, 1, S)
    context = torch.bmm(weights, memory.states)  # (1, 1, H)
    attentional = torch.tanh(decoder.combine(torch.cat([context, out], -1)))[:, 0]  # (1, A)
    logits = model.project(attentional, weights[:, 0], memory.tokens)  # (1, V); with copy attention, log p
    return {
        "logp": torch.log_softmax(logits.float(), -1)[0],  # (V,)
        "gate": float(model.copy.generate_share(attentional)) if model.copy is not None else None,
        "state": state,
        "scores": scores[0, 0],
        "weights": weights[0, 0],
        "context": context[0, 0],
        "h": out[0, 0],
        "feed": attentional,
    }


def read_pieces(model: Seq2Seq, memory, state, pieces: list[int]) -> list[dict]:
    """`read_step` at every position of a reply: the piece before it given, from BOS on; with copy
    attention, what of each piece's probability the message gave (`copied`)."""
    feed, token, readings = model.initial_feed(1), BOS, []
    for piece in pieces:
        out = read_step(model, token, state, memory, feed)
        if out["gate"] is not None:
            out["copied"] = copied(out, memory.tokens[0], piece)
        readings.append(out)
        token, state, feed = piece, out["state"], out["feed"]
    return readings


def copied(reading: dict, source: torch.Tensor, piece: int) -> dict:
    """Copy attention at one step: the gate (the share written from the vocabulary), the message's
    positions that hold `piece`, and the share of the piece's probability they gave."""
    positions = (source == piece).nonzero().flatten()
    given = (1 - reading["gate"]) * float(reading["weights"][positions].sum())
    return {
        "gate": round(reading["gate"], 4),
        "positions": positions.tolist(),
        "share": round(min(1.0, given / max(math.exp(float(reading["logp"][piece])), 1e-30)), 4),
    }


KEPT_SHOWN = 20  # pieces of the set a sampled piece was drawn from, listed on its page


class StepRecorder:
    """An observer of the decode (`chatbot.decoding.Step`): per step, for every row, what a page
    needs of it, small (the top pieces, not the whole distribution): a consensus reply's rows are
    many, and which of them answers is known only at the end."""

    def __init__(self, settings: Settings):
        self.settings, self.steps = settings, []
        self.width = max(KEPT_SHOWN, getattr(settings, "beam_size", 1))

    def __call__(self, step: Step) -> None:
        forced = step.context.unforced is not None
        proposed = step.context.unforced if forced else step.logp  # (R, V) what the strategy was offered
        choice = step.choice
        parent = choice.rows if choice.rows is not None else torch.arange(proposed.size(0), device=proposed.device)
        values, ids = proposed.topk(min(self.width, proposed.size(-1)), dim=-1)
        record = {
            "forced": forced,
            "top": (values.tolist(), ids.tolist()),  # by the row that computed them
            "attention": step.attention.float().clone(),  # (R, S)
            "rows": parent.tolist(),  # by new row: the row it continues
            "tokens": choice.tokens.tolist(),
            "logp": proposed[parent, choice.tokens].tolist(),  # the chosen pieces' log-probabilities
            "scores": choice.scores.tolist() if choice.scores is not None else None,
            "whole": dict(step.context.whole or {}),  # rows held to a copied word (`WholeWords`)
        }
        s = self.settings
        if s.name == "sample" and s.temperature > 0 and not forced:  # the set each piece was drawn from
            probs, kept_ids, keep = ranked_candidates(step.logp / s.temperature, s.top_k, s.top_p)
            kept = probs * keep
            kept = kept / kept.sum(-1, keepdim=True)
            record["kept"] = (kept[:, :KEPT_SHOWN].tolist(), kept_ids[:, :KEPT_SHOWN].tolist(), keep.sum(-1).tolist())
        self.steps.append(record)


@torch.no_grad()
def walk_through(
    engine,
    tokenizer: Tokenizer,
    message: str,
    settings: Settings,
    context: Sequence[str] = (),
    mine: Sequence[bool] | None = None,
    reply_text: str | None = None,
    forced: dict[int, str] | None = None,
    taught=None,
) -> dict:
    """Every number of one reply to `message`, decoded by `engine` (or a model) as a reply is (see the
    module's docstring), the turns before it `context` (`mine`: which the model said). A sampling
    strategy without a seed gets one, recorded in the walk's settings. With `reply_text`, teacher
    forcing on that reply too; `forced` {step: piece} makes the reply take that piece at that step
    (what-if) and decodes on from there. `taught`: the memory of taught replies the reply
    followed (`chatbot.taught`), as it was then."""
    engine = as_engine(engine)  # a model runs as its flat engine, as replies run it
    model = engine.model  # the reference modules: the encoder's steps, the scores, the context vector
    model.eval()
    if getattr(settings, "seed", 0) is None:
        settings = replace(settings, seed=secrets.randbelow(MAX_SEED + 1))
    ids, truncated = prepare(tokenizer, engine, message, context, mine)
    pieces, fallback = pieces_of(tokenizer, ids)
    src, lengths = pad_right([ids], model.device)
    memory, state = model.encode(src, lengths)
    states, final = model.encoder(model.embed(src), lengths)  # final (L, 1, H): each direction's last state
    recorder = StepRecorder(settings)
    forced_ids = {step: tokenizer.sp.piece_to_id(name) for step, name in (forced or {}).items()}
    (chosen, *_) = reply(
        engine, tokenizer, [message], settings, contexts=[list(context)], mine=[mine], gains=True,
        observers=[recorder], forced=forced_ids, taught=taught,
    )[0]  # fmt: skip
    walk = {
        "labels": LABELS,
        "message": message,
        "context": list(context),
        "truncated": truncated,
        "pieces": pieces,
        "byte_fallback": fallback,
        "encoder": encoder_steps(model, src),
        "bridge": {"final": rounded(final), "h": rounded(state[0]), "c": rounded(state[1])},
        "settings": chosen.settings,
        "reply": chosen.text,
        "reply_ids": chosen.tokens,
        "path": path_of(tokenizer, chosen),
    }
    if settings.name == "beam":
        walk.update(beam_steps(recorder, tokenizer, settings.beam_size), beam=True)
        walk.update(finished=finalists(tokenizer, chosen), rerank=chosen.settings.get("rerank", 0.0))
    else:
        readings = read_pieces(model, memory, state, chosen.tokens + [EOS] * chosen.finished)
        walk["steps"] = chosen_steps(recorder, tokenizer, chosen, readings, settings)
        if chosen.candidates:
            walk["consensus"] = {
                "candidates": [
                    {"reply": text, "agreement": round(a, 4), "ranked_last": flaw or None}
                    for text, a, flaw in chosen.candidates
                ],
                "evidence": sampled_rows(settings) - settings.candidates,
            }
    if reply_text is not None:
        walk["teacher_forcing"] = teacher_forcing(model, tokenizer, memory, state, reply_text)
    return walk


def english(how: dict) -> str:
    from chatbot.i18n import catalogue

    return catalogue("en")[f"why.{how['kind']}"].format(**{k: v for k, v in how.items() if k != "kind"})


def name_of(tokenizer: Tokenizer, piece: int) -> str:
    return tokenizer.pieces([piece])[0]


def path_of(tokenizer: Tokenizer, chosen) -> list[dict]:
    """The reply's pieces (and its EOS), each with its probability and attention: what the plot draws."""
    pieces = chosen.tokens + [EOS] * chosen.finished
    return [
        {"piece": name_of(tokenizer, i), "p": round(math.exp(lp), 6), "attention": [round(w, 4) for w in row]}
        for i, lp, row in zip(pieces, chosen.token_logprobs, chosen.attention)
    ]


def how_chosen(record: dict, row: int, settings: Settings, tokenizer: Tokenizer, piece: int) -> dict:
    """Why the strategy took its piece at this step, as data (the pages word it)."""
    if record["forced"]:
        return {"kind": "forced", "piece": name_of(tokenizer, piece)}
    if "kept" in record:
        count = int(record["kept"][2][row])
        return {
            "kind": "sample" if count > 1 else "sample_one",
            "count": count,
            "temperature": f"{settings.temperature:g}",
            "top_k": settings.top_k,
            "top_p": f"{settings.top_p:g}",
        }
    return {"kind": "argmax"}


def chosen_steps(recorder: StepRecorder, tokenizer: Tokenizer, chosen, readings: list[dict], settings) -> list[dict]:
    """The steps of the reply that answered (greedy search, sampling, the chosen consensus
    candidate): at each, what the decode offered the strategy and took, beside what the model's
    modules read there."""
    hypothesis = chosen.hypothesis
    pieces = chosen.tokens + [EOS] * chosen.finished
    steps = []
    for t, piece in enumerate(pieces):
        record, row = recorder.steps[t], hypothesis.rows[t]  # rows never move: the row is its own
        values, ids = record["top"]
        reading = readings[t]
        step = {
            "step": t,
            "input": name_of(tokenizer, pieces[t - 1] if t else BOS),
            "scores": rounded(reading["scores"]),
            "attention": rounded(record["attention"][row]),
            "context": rounded(reading["context"]),
            "context_norm": float(reading["context"].norm()),
            "hidden_norm": float(reading["h"].norm()),
            "top": [  # pieces a rule barred (-inf) are not offered: not shown
                [name_of(tokenizer, i), round(math.exp(v), 4)]
                for i, v in zip(ids[row][:TOP], values[row][:TOP])
                if v > -math.inf
            ],
            "how": how_chosen(record, row, settings, tokenizer, piece),
            "chosen": name_of(tokenizer, piece),
            "p": round(math.exp(record["logp"][row]), 6),
            "logprob": record["logp"][row],
        }
        step["why"] = english(step["how"])  # for readers of --json; the pages say it in the interface's language
        if "kept" in record:
            kept_p, kept_ids, _ = record["kept"]
            step["kept"] = [[name_of(tokenizer, i), round(p, 4)] for i, p in zip(kept_ids[row], kept_p[row]) if p > 0]
        if chosen.gains is not None:
            step["gain"] = round(chosen.gains[t], 4)  # log p(piece | message) - log p(piece | no message)
        if "copied" in reading:  # copy attention: the gate, and what the message gave this piece
            step["copy"] = reading["copied"]
        if row in record["whole"]:  # held to a word it was copying: its next piece, or no piece going on it
            held = record["whole"][row]
            if isinstance(held, tuple):  # a piece of another capitalised word barred after this one
                step["whole"] = {"barred": name_of(tokenizer, held[1])}
            else:
                step["whole"] = {"piece": name_of(tokenizer, held)} if held is not None else {"ended": True}
        if chosen.taught and chosen.taught[t]:  # a taught reply weighed in: (its weight, its id in the log)
            step["taught"] = {"weight": chosen.taught[t][0], "id": chosen.taught[t][1]}
        steps.append(step)
    return steps


def beam_steps(recorder: StepRecorder, tokenizer: Tokenizer, K: int) -> dict:
    """Beam search's steps as it ran them: each live hypothesis, its candidates kept (with the
    hypothesis each becomes) and pruned, every one with its score (summed log-probabilities)."""
    prefixes, before, steps = [[] for _ in range(K)], [0.0] + [-math.inf] * (K - 1), []
    for t, record in enumerate(recorder.steps):
        values, ids = record["top"]
        live = [r for r in range(K) if before[r] > -math.inf]
        kept, taken = [], set()
        for i in range(K):
            parent, piece, score = record["rows"][i], record["tokens"][i], record["scores"][i]
            if score > -math.inf:
                whole = prefixes[parent] + [piece]
                kept.append({"parent": parent, "piece": name_of(tokenizer, piece), "score": round(score, 4)})
                kept[-1]["pieces"] = tokenizer.pieces(whole)
                taken.add((parent, piece))
        pruned = [
            {"parent": r, "piece": name_of(tokenizer, i), "score": round(before[r] + v, 4)}
            for r in live
            for i, v in zip(ids[r][:K], values[r][:K])
            if v > -math.inf and (r, i) not in taken
        ]
        grown = [{"row": r, "pieces": tokenizer.pieces(prefixes[r]), "score": round(before[r], 4)} for r in live]
        steps.append({
            "step": t,
            "hypotheses": grown,
            "kept": kept,
            "pruned": sorted(pruned, key=lambda c: -c["score"]),
            "attention": rounded(record["attention"][kept[0]["parent"] if kept else 0]),
        })  # fmt: skip
        prefixes = [prefixes[record["rows"][i]] + [record["tokens"][i]] for i in range(K)]
        before = [-math.inf if p == EOS else s for p, s in zip(record["tokens"], record["scores"])]  # ended: finished
    return {"steps": steps}


def finalists(tokenizer: Tokenizer, chosen) -> list[dict]:
    """Beam search's finished replies in the order they are ranked: their score (summed log p
    over the length penalty) mixed with what the message adds, as `rerank` says."""
    return [
        {
            "reply": tokenizer.decode(f.tokens),
            "score": round(f.likelihood, 4),
            "gain": round(sum(f.gains), 4) if f.gains else 0.0,
            "rank_score": round(f.score, 4),
        }
        for f in chosen.hypothesis.finalists or []
    ]


def teacher_forcing(model, tokenizer, memory, state, reply_text: str) -> dict:
    """The decoder fed the true reply piece by piece: at each position the probability it gives
    the true next piece, what it would have written itself there (its most likely piece), and the
    cross-entropy, the loss training minimises (their mean is the token-level NLL)."""
    targets = tokenizer.encode(reply_text) + [EOS]
    positions = []
    for t, (target, out) in enumerate(zip(targets, read_pieces(model, memory, state, targets))):
        logp = out["logp"]
        own = int(logp.argmax())
        positions.append({
            "input": name_of(tokenizer, targets[t - 1] if t else BOS),
            "target": name_of(tokenizer, target),
            "p_target": round(math.exp(float(logp[target])), 6),
            "own": name_of(tokenizer, own),
            "p_own": round(math.exp(float(logp[own])), 6),
            "cross_entropy": -float(logp[target]),
            "attention": rounded(out["weights"]),
        })  # fmt: skip
    total = sum(p["cross_entropy"] for p in positions)
    return {"reply": reply_text, "positions": positions, "total_nll": total, "mean_nll": total / len(positions)}
