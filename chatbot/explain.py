"""A walk-through of one reply, step by step, from the reference model's own modules.

Seq2seq is taught in steps: the encoder reads the message piece by piece, keeping two streams
(the hidden state and the cell state); its last states become the decoder's first (the "context
vector"); at each step the decoder scores every encoder state against its own state, softmax
turns the scores into attention weights, their weighted sum is the context, and a softmax over
the vocabulary gives the next piece, fed back until `</s>`. Training feeds the true previous piece
instead (teacher forcing) and learns from the cross-entropy at each position.

`walk_through` records every one of those numbers for one message on a trained model, as the
modules of `chatbot/model.py` compute them, and `chatbot.explain_pages` shows them a page per step.
The rules and strategies are those replies use (`chatbot.decoding`, `chatbot.strategies`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch

from chatbot.decoding import apply_rules, guidance_of, only_eos, prepare, ranking_score, reply, rerank_of
from chatbot.model import Seq2Seq, pad_right
from chatbot.settings import Settings
from chatbot.strategies import draw, finished_wanted, length_penalty, ranked_candidates, sampled_rows
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
def decoder_step(model: Seq2Seq, token: int, state, memory, feed) -> dict:
    """One decoder step through the model's modules, keeping what `Seq2Seq.step` does not return:
    the attention's raw scores and the context vector."""
    decoder = model.decoder
    x = model.embed(torch.tensor([token], device=model.device))  # (1, E)
    if model.cfg.input_feeding:
        x = torch.cat([x, feed], -1)
    out, state = decoder.lstm(x.unsqueeze(1), state)  # (1, 1, H)
    scores = decoder.attention.scores(out, memory)  # (1, 1, S)
    weights = torch.softmax(scores, -1)  # (1, 1, S)
    context = torch.bmm(weights, memory.states)  # (1, 1, H)
    attentional = torch.tanh(decoder.combine(torch.cat([context, out], -1)))[:, 0]  # (1, A)
    logits = model.out(attentional)  # (1, V)
    return {
        "logits": logits,
        "state": state,
        "scores": scores[0, 0],
        "weights": weights[0, 0],
        "context": context[0, 0],
        "h": out[0, 0],
        "feed": attentional,
    }


def top_pieces(tokenizer: Tokenizer, logp: torch.Tensor, k: int = TOP) -> list[list]:
    values, ids = logp.topk(k)
    return [[tokenizer.pieces([i])[0], round(math.exp(v), 4)] for i, v in zip(ids.tolist(), values.tolist())]


@torch.no_grad()
def walk_through(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    message: str,
    settings: Settings,
    context: Sequence[str] = (),
    reply_text: str | None = None,
    forced: dict[int, str] | None = None,
    replier=None,
) -> dict:
    """Every number of one reply to `message`, as the reference model computes it (see the module's
    docstring); with `reply_text`, teacher forcing on that reply; `forced` {step: piece} makes the
    strategy take that piece at that step (what-if) and decodes on from there. `replier`, the
    engine the chat replies with, draws consensus sampling's candidates, so that a reply's own seed
    draws the same ones again (default: the reference model, whose float sums may draw others)."""
    model.eval()
    ids, truncated = prepare(tokenizer, model, message, context)
    pieces, fallback = pieces_of(tokenizer, ids)
    src, lengths = pad_right([ids], model.device)
    memory, state = model.encode(src, lengths)
    states, final = model.encoder(model.embed(src), lengths)  # final (L, 1, H): each direction's last state
    walk = {
        "labels": LABELS,
        "message": message,
        "context": list(context),
        "truncated": truncated,
        "pieces": pieces,
        "byte_fallback": fallback,
        "encoder": encoder_steps(model, src),
        "bridge": {"final": rounded(final), "h": rounded(state[0]), "c": rounded(state[1])},
        "settings": settings.to_dict(),
    }
    if settings.name == "beam":
        walk.update(beam_steps(model, tokenizer, memory, state, settings, src))
    else:
        walk.update(stepwise(model, tokenizer, memory, state, settings, src, forced or {}))
        if settings.name == "sample" and settings.candidates > 1:
            walk["consensus"] = consensus(replier or model, tokenizer, message, settings, context)
    if reply_text is not None:
        walk["teacher_forcing"] = teacher_forcing(model, tokenizer, memory, state, reply_text)
    return walk


def english(how: dict) -> str:
    from chatbot.i18n import catalogue

    return catalogue("en")[f"why.{how['kind']}"].format(**{k: v for k, v in how.items() if k != "kind"})


def _banned(tokenizer: Tokenizer) -> torch.Tensor:
    return torch.tensor(tokenizer.never_written(), dtype=torch.long)


def read_nothing(model: Seq2Seq):
    """The encoder's reading of no message (a lone EOS): what guidance's twin decoder attends over."""
    nothing, lengths = pad_right([[EOS]], model.device)
    return model.encode(nothing, lengths)


def twin_step(model: Seq2Seq, token: int, logp: torch.Tensor, twin_state, twin_memory, twin_feed, w: float):
    """The twin decoder's step on no message beside the real one: (the log-probabilities guided by
    w, the message's gain per piece, the twin's own step)."""
    twin = decoder_step(model, token, twin_state, twin_memory, twin_feed)
    gain = logp - torch.log_softmax(twin["logits"].float(), -1)
    return (torch.log_softmax(logp + w * gain, -1) if w else logp), gain, twin


def stepwise(model, tokenizer, memory, state, settings, src, forced: dict[int, str]) -> dict:
    """Greedy search or sampling, one step at a time, each step's every number kept. With guidance
    (`chatbot.decoding`), a twin decoder reads no message beside it, and the scores the strategy
    picks from are log p(. | message) + w (log p(. | message) - log p(. | no message))."""
    generator = torch.Generator().manual_seed(settings.seed if getattr(settings, "seed", None) is not None else 0)
    feed, token, reply, steps = model.initial_feed(1), BOS, [], []
    history = torch.zeros((1, 0), dtype=torch.long, device=src.device)
    banned = _banned(tokenizer).to(src.device)
    w = guidance_of(model, settings)
    if w:
        twin_memory, twin_state = read_nothing(model)
        twin_feed = model.initial_feed(1)
    for t in range(settings.max_length + 1):
        out = decoder_step(model, token, state, memory, feed)
        logp = torch.log_softmax(out["logits"].float(), -1)
        if w:
            logp, gain, twin = twin_step(model, token, logp, twin_state, twin_memory, twin_feed, w)
            twin_state, twin_feed = twin["state"], twin["feed"]
        ruled = apply_rules(logp.clone(), settings, history, src, t, (list(reply), src[0].tolist()), banned)
        if t == settings.max_length:
            ruled = only_eos(ruled)
        step = {
            "step": t,
            "input": tokenizer.pieces([token])[0],
            "scores": rounded(out["scores"]),
            "attention": rounded(out["weights"]),
            "context": rounded(out["context"]),
            "context_norm": float(out["context"].norm()),
            "hidden_norm": float(out["h"].norm()),
            "top": top_pieces(tokenizer, ruled[0]),
        }
        if t in forced:
            chosen = tokenizer.sp.piece_to_id(forced[t])
            step["how"] = {"kind": "forced", "piece": forced[t]}
        elif settings.name == "sample" and settings.temperature > 0:
            probs, ids, keep = ranked_candidates(ruled / settings.temperature, settings.top_k, settings.top_p)
            kept = (probs * keep)[0]
            kept = kept / kept.sum()
            picked = int(draw(kept.unsqueeze(0), generator))
            chosen = int(ids[0, picked])
            step["kept"] = [
                [tokenizer.pieces([i])[0], round(float(p), 4)] for i, p in zip(ids[0].tolist(), kept.tolist()) if p > 0
            ][:20]
            step["how"] = {
                "kind": "sample" if int(keep.sum()) > 1 else "sample_one",
                "count": int(keep.sum()),
                "temperature": f"{settings.temperature:g}",
                "top_k": settings.top_k,
                "top_p": f"{settings.top_p:g}",
            }
        else:
            chosen = int(ruled.argmax())
            step["how"] = {"kind": "argmax"}
        step["why"] = english(step["how"])  # for readers of --json; the pages say it in the interface's language
        if w:
            step["gain"] = round(float(gain[0, chosen]), 4)  # log p(piece | message) - log p(piece | no message)
        step["chosen"] = tokenizer.pieces([chosen])[0]
        step["p"] = round(math.exp(float(ruled[0, chosen])), 6)
        step["logprob"] = float(ruled[0, chosen])
        steps.append(step)
        if chosen == EOS:
            break
        reply.append(chosen)
        history = torch.cat([history, torch.tensor([[chosen]])], 1)
        token, state, feed = chosen, out["state"], out["feed"]
    return {"steps": steps, "reply": tokenizer.decode(reply), "reply_ids": reply}


def consensus(model, tokenizer, message: str, settings, context: Sequence[str]) -> dict:
    """Consensus sampling's choice (`chatbot.consensus`): the candidates drawn as the steps draw
    one, and how much the replies drawn from the model as it is agree with each; the first answers."""
    seeded = replace(settings, seed=settings.seed if settings.seed is not None else 0)
    (chosen,) = reply(model, tokenizer, [message], seeded, contexts=[list(context)])[0]
    return {
        "candidates": [{"reply": text, "agreement": round(a, 4)} for text, a in chosen.candidates],
        "evidence": sampled_rows(settings) - settings.candidates,
    }


def beam_steps(model, tokenizer, memory, state, settings, src) -> dict:
    """Beam search, one step at a time: every hypothesis's candidates, the ones kept and the ones
    pruned, with their scores (summed log-probabilities, guided as in `stepwise`); at the end, the
    finished replies ranked as `chatbot.decoding` ranks them (rerank: by what the message adds)."""
    K = settings.beam_size
    w, rerank = guidance_of(model, settings), rerank_of(model, settings)
    twins = bool(w or rerank)  # a twin decoder per hypothesis reads no message
    if twins:
        twin_memory, twin_state = read_nothing(model)
    live = [{"tokens": [], "score": 0.0, "state": state, "feed": model.initial_feed(1), "gain": 0.0}]
    if twins:
        live[0].update(twin_state=twin_state, twin_feed=model.initial_feed(1))
    finished, steps = [], []
    banned = _banned(tokenizer)
    wanted = finished_wanted(settings, rerank)  # as `chatbot.strategies.Beam` stops
    for t in range(settings.max_length + 1):
        candidates = []
        for parent, hyp in enumerate(live):
            token = hyp["tokens"][-1] if hyp["tokens"] else BOS
            out = decoder_step(model, token, hyp["state"], memory, hyp["feed"])
            logp = torch.log_softmax(out["logits"].float(), -1)
            twin, gain = None, torch.zeros_like(logp)
            if twins:
                logp, gain, twin = twin_step(model, token, logp, hyp["twin_state"], twin_memory, hyp["twin_feed"], w)
            history = torch.tensor([hyp["tokens"]], dtype=torch.long).view(1, -1)
            ruled = apply_rules(logp.clone(), settings, history, src, t, (list(hyp["tokens"]), src[0].tolist()), banned)
            if t == settings.max_length:
                ruled = only_eos(ruled)
            values, ids = ruled[0].topk(K)
            for v, i in zip(values.tolist(), ids.tolist()):
                if v > float("-inf"):
                    candidates.append(
                        {
                            "parent": parent,
                            "id": i,
                            "score": hyp["score"] + v,
                            "gain": hyp["gain"] + float(gain[0, i]),
                            "out": out,
                            "twin": twin,
                            "attention": out["weights"],
                        }
                    )
        candidates.sort(key=lambda c: -c["score"])
        kept, pruned = candidates[:K], candidates[K:]
        step = {"step": t, "kept": [], "pruned": []}
        step["hypotheses"] = [  # the ones this step grew, in `parent` order
            {"pieces": tokenizer.pieces(hyp["tokens"]), "score": round(hyp["score"], 4)} for hyp in live
        ]
        for c in kept:
            step["kept"].append(
                {"parent": c["parent"], "piece": tokenizer.pieces([c["id"]])[0], "score": round(c["score"], 4)}
            )
        for c in pruned:
            step["pruned"].append(
                {"parent": c["parent"], "piece": tokenizer.pieces([c["id"]])[0], "score": round(c["score"], 4)}
            )
        step["attention"] = rounded(kept[0]["attention"])  # the best candidate's parent's attention
        steps.append(step)
        new_live = []
        for c in kept:
            tokens = live[c["parent"]]["tokens"] + [c["id"]]
            if c["id"] == EOS:
                length = len(tokens) - 1
                finished.append((c["score"] / length_penalty(length, settings.length_penalty), tokens[:-1], c["gain"]))
            else:
                hyp = {"tokens": tokens, "score": c["score"], "state": c["out"]["state"], "feed": c["out"]["feed"]}
                hyp["gain"] = c["gain"]
                if twins:
                    hyp.update(twin_state=c["twin"]["state"], twin_feed=c["twin"]["feed"])
                new_live.append(hyp)
        live = new_live
        if not live or len(finished) >= K or (finished and kept[0]["id"] == EOS and len(finished) >= wanted):
            break
    finished = sorted(finished, key=lambda f: -f[0])[:K]
    if rerank:
        finished = sorted(finished, key=lambda f: -ranking_score(f[0], f[2], rerank))
    best = finished[0] if finished else (0.0, live[0]["tokens"], 0.0)
    ranked = [
        {
            "reply": tokenizer.decode(tokens),
            "score": round(score, 4),
            "gain": round(gain, 4),
            "rank_score": round(ranking_score(score, gain, rerank), 4),
        }
        for score, tokens, gain in finished
    ]
    return {
        "steps": steps,
        "finished": ranked,
        "rerank": rerank,
        "reply": tokenizer.decode(best[1]),
        "reply_ids": best[1],
        "beam": True,
    }


def teacher_forcing(model, tokenizer, memory, state, reply_text: str) -> dict:
    """The decoder fed the true reply piece by piece: at each position the probability it gives
    the true next piece, what it would have written itself there (its most likely piece), and the
    cross-entropy, the loss training minimises (their mean is the token-level NLL)."""
    targets = tokenizer.encode(reply_text) + [EOS]
    feed, token, positions = model.initial_feed(1), BOS, []
    for target in targets:
        out = decoder_step(model, token, state, memory, feed)
        logp = torch.log_softmax(out["logits"].float(), -1)[0]
        own = int(logp.argmax())
        positions.append({
            "input": tokenizer.pieces([token])[0],
            "target": tokenizer.pieces([target])[0],
            "p_target": round(math.exp(float(logp[target])), 6),
            "own": tokenizer.pieces([own])[0],
            "p_own": round(math.exp(float(logp[own])), 6),
            "cross_entropy": -float(logp[target]),
            "attention": rounded(out["weights"]),
        })  # fmt: skip
        token, state, feed = target, out["state"], out["feed"]
    total = sum(p["cross_entropy"] for p in positions)
    return {"reply": reply_text, "positions": positions, "total_nll": total, "mean_nll": total / len(positions)}
