"""The walk-through (`chatbot.explain`) as pages, one step each, as Rich renderables: printed by
`chatbot explain` and shown by the chat's walk-through screen alike."""

from __future__ import annotations

import math

from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from chatbot.i18n import t
from chatbot.validation import printable


def times_likelier(gain: float) -> str:
    """A log ratio as "how many times likelier", short enough for a table's column: 6.7, 189,
    50k, 5M. A taught reply's pieces count as the message's doing and reach millions."""
    ratio = math.exp(min(gain, 50.0))
    if ratio < 100:
        return f"{ratio:.1f}"
    if ratio < 10_000:
        return f"{ratio:.0f}"
    if ratio < 999_500:  # what rounds to 1000k is 1M
        return f"{ratio / 1e3:.0f}k"
    return f"{ratio / 1e6:.0f}M" if ratio < 999_500_000 else f"{ratio:.0e}"


STRIP = 24  # dimensions of a state drawn as a heat strip
BAR = 20  # characters of a probability bar


RISING = "▁▂▃▄▅▆▇█"  # a positive value's size, as a block's height
WIDENING = "▏▎▍▌▋▊▉█"  # a negative value's size, as a block's width


def strip(values: list[float], scale: float | None = None) -> Text:
    """A state's first STRIP dimensions, one character each: a positive value as a block whose
    height is its size, a negative one as a block whose width is its size (readable without
    colour, piped to a file too), and coloured as well: red positive, blue negative."""
    shown = values[:STRIP]
    scale = scale or max((abs(v) for v in shown), default=1.0) or 1.0
    text = Text()
    for v in shown:
        size = min(abs(v) / scale, 1.0)
        glyph = (RISING if v >= 0 else WIDENING)[min(len(RISING) - 1, int(size * len(RISING)))]
        level = int(55 + 200 * size)
        text.append(glyph, style=f"rgb({level},40,40)" if v >= 0 else f"rgb(40,40,{level})")
    return text


def bar(p: float) -> Text:
    n = round(p * BAR)
    return Text("█" * n + "·" * (BAR - n), style="green")


def piece(text: str) -> str:
    return printable(text.replace("▁", "_"))


def title(walk: dict, key: str, rest: str = "") -> Text:
    return Text.assemble((walk["labels"].get(key, key), "bold"), rest)


def pages(walk: dict) -> list:
    """Every page of a walk-through, in order."""
    out = [pieces_page(walk)]
    out += [encoder_page(walk, layer) for layer in range(len(walk["encoder"]))]
    out.append(bridge_page(walk))
    if walk.get("beam"):
        out += [beam_page(walk, step) for step in walk["steps"]]
        if walk.get("finished"):
            out.append(finished_page(walk))
    else:
        out += [step_page(walk, step) for step in walk["steps"]]
        if walk.get("consensus"):
            out.append(consensus_page(walk))
    if "teacher_forcing" in walk:
        out.append(teacher_forcing_page(walk))
    return out


def step_pages(walk: dict) -> dict[int, dict]:
    """Which page shows which decoder step of greedy search or sampling (what-if forces a piece
    there); beam search's steps are not one choice each, so none of its pages."""
    if walk.get("beam"):
        return {}
    first = 2 + len(walk["encoder"])  # after the pieces, the encoder's layers and the bridge
    return {first + i: step for i, step in enumerate(walk["steps"])}


def pieces_page(walk: dict) -> Group:
    table = Table(box=None, padding=(0, 1))
    table.add_column("#", justify="right")
    table.add_column(t("walk.piece"))
    table.add_column("id", justify="right")
    for i, p in enumerate(walk["pieces"]):
        table.add_row(str(i), Text(piece(p["piece"]), style="dim" if p["byte"] else ""), str(p["id"]))
    notes = [Text(t("walk.pieces_note", count=len(walk["pieces"])))]
    if walk["context"]:
        notes.append(Text(t("walk.speakers_note")))
    for f in walk["byte_fallback"]:
        notes.append(Text(t("walk.fallback_note", text=printable(f["text"]), pieces=" ".join(f["pieces"]))))
    return Group(title(walk, "pieces", f": {printable(walk['message'])}"), table, *notes)


def encoder_page(walk: dict, layer: int) -> Group:
    pieces = [piece(p["piece"]) for p in walk["pieces"]]
    labels = walk["labels"]
    parts = [
        title(walk, "encoder", t("walk.encoder", layer=layer + 1)),
        Text(t("walk.streams", hidden=labels["hidden"], cell=labels["cell"], dims=STRIP), style="dim"),
    ]
    for direction in ("forward", "backward"):
        table = Table(box=None, padding=(0, 1), title=t(f"walk.{direction}"))
        for column in (t("walk.piece"), "h", "|h|", "c", "|c|"):
            table.add_column(column)
        for s in walk["encoder"][layer][direction]:
            h, c = strip(s["h"]), strip(s["c"])
            table.add_row(pieces[s["position"]], h, f"{s['h_norm']:.2f}", c, f"{s['c_norm']:.2f}")
        parts.append(table)
    return Group(*parts)


def bridge_page(walk: dict) -> Group:
    b = walk["bridge"]
    table = Table(box=None, padding=(0, 1))
    table.add_column("")
    table.add_column(t("walk.dimensions"))
    table.add_row(t("walk.last_states"), strip(b["final"]))
    table.add_row(t("walk.first_h"), strip(b["h"]))
    table.add_row(t("walk.first_c"), strip(b["c"]))
    return Group(title(walk, "context_vector", t("walk.bridge")), Text(t("walk.bridge_note")), table)


def attention_table(walk: dict, scores: list[float] | None, weights: list[float]) -> Table:
    table = Table(box=None, padding=(0, 1))
    table.add_column(t("walk.message_piece"))
    if scores is not None:
        table.add_column(t("walk.score"), justify="right")
    table.add_column(t("walk.weight"), justify="right")
    table.add_column("")
    for i, p in enumerate(walk["pieces"]):
        row = [piece(p["piece"])] + ([f"{scores[i]:.2f}"] if scores is not None else [])
        table.add_row(*row, f"{weights[i]:.3f}", bar(weights[i]))
    return table


def why(step: dict) -> str:
    """Why the strategy took its piece, in the interface's language."""
    how = step["how"]
    return t(f"why.{how['kind']}", **{k: v for k, v in how.items() if k != "kind"})


def step_page(walk: dict, step: dict) -> Group:
    labels = walk["labels"]
    top = Table(box=None, padding=(0, 1), title=t("walk.top", label=labels["softmax"]))
    top.add_column(t("walk.piece"))
    top.add_column("p", justify="right")
    top.add_column("")
    for name, p in step["top"]:
        top.add_row(piece(name), f"{p:.3f}", bar(p))
    chosen = Text.assemble(
        (t("walk.chosen"), "bold"), (piece(step["chosen"]), "bold green"), f"  p {step['p']:.3f}  ({why(step)})"
    )
    parts = [
        title(walk, "decoder", t("walk.step", step=step["step"] + 1, input=repr(piece(step["input"])))),
        Text.assemble((labels["attention"], "bold"), t("walk.attention")),
        attention_table(walk, step["scores"], step["attention"]),
        *([Text(t("walk.int8_scores"), style="dim")] if walk["settings"].get("precision") == "int8" else []),
        Text(t("walk.context", label=labels["context_vector"])),
        Text(t("walk.norm", norm=f"{step['context_norm']:.2f}"), style="dim"),
        top,
        chosen,
    ]
    if "gain" in step:
        parts.append(Text(t("walk.gain", times=times_likelier(step["gain"]))))
    if "copy" in step:
        c = step["copy"]
        where = ", ".join(f"{i} {piece(walk['pieces'][i]['piece'])}" for i in c["positions"][:4]) or "-"
        shares = {"gate": f"{c['gate']:.0%}", "copy": f"{1 - c['gate']:.0%}", "share": f"{c['share']:.0%}"}
        parts.append(Text(t("walk.copy", where=where, **shares)))
    if "whole" in step:  # WholeWords held the reply to a word it was copying
        whole = step["whole"]
        if "piece" in whole:
            parts.append(Text(t("walk.whole_goes_on", piece=piece(whole["piece"]))))
        elif "barred" in whole:
            parts.append(Text(t("walk.whole_other_name", piece=piece(whole["barred"]))))
        else:
            parts.append(Text(t("walk.whole_ended")))
    if "taught" in step:  # a negative weight: a reply rated bad, pushed away from
        taught = step["taught"]
        key = "walk.taught" if taught["weight"] > 0 else "walk.shunned"
        parts.append(Text(t(key, id=taught["id"], weight=f"{abs(taught['weight']):.2f}")))
    if "kept" in step:
        parts.append(Text(t("walk.kept") + ", ".join(f"{piece(n)} {p:.2f}" for n, p in step["kept"][:8])))
    return Group(*parts)


def prefix(pieces: list[str], width: int = 40) -> str:
    """A hypothesis as `<s>` (the start piece, as every other page names it) and its pieces, its
    start cut when it is long."""
    text = " ".join(["<s>"] + [piece(p) for p in pieces])
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def beam_page(walk: dict, step: dict) -> Group:
    """One beam step drawn as a tree: each hypothesis grown this step, its candidates kept (each a
    branch that goes on) and pruned (one line), every one with its score."""
    parts = [
        title(walk, "decoder", t("walk.beam", step=step["step"] + 1, count=len(step["kept"]))),
        Text(t("walk.beam_note")),
    ]
    for hyp in step["hypotheses"]:
        parent = hyp["row"]
        node = Tree(Text.assemble((f"[{parent}] ", "dim"), prefix(hyp["pieces"]), (f"  {hyp['score']:.2f}", "dim")))
        for c in step["kept"]:
            if c["parent"] == parent:
                node.add(
                    Text.assemble(
                        (f"{t('walk.kept_label')} ", "green"), (piece(c["piece"]), "bold"), f"  {c['score']:.2f}"
                    )
                )
        pruned = [c for c in step["pruned"] if c["parent"] == parent]
        if pruned:
            shown = " · ".join(f"{piece(c['piece'])} {c['score']:.2f}" for c in pruned[:4])
            node.add(Text(f"{t('walk.pruned_label')} {shown}", style="dim"))
        parts.append(node)
    return Group(*parts)


def finished_page(walk: dict) -> Group:
    """Beam search's finished replies and the order they are ranked in: by their score (summed
    log p over the length penalty) mixed with what the message adds, as `rerank` says."""
    table = Table(box=None, padding=(0, 1))
    for column in ("#", t("walk.reply"), t("walk.score"), t("walk.gain_column"), t("walk.rank_score")):
        table.add_column(column, justify="left" if column == t("walk.reply") else "right")
    for i, f in enumerate(walk["finished"]):
        row = [str(i + 1), printable(f["reply"]), f"{f['score']:.2f}", f"{f['gain']:.2f}", f"{f['rank_score']:.2f}"]
        table.add_row(*row, style="bold green" if i == 0 else "")
    note = t("walk.finished_note", rerank=f"{walk['rerank']:g}", keep=f"{1 - walk['rerank']:g}")
    return Group(title(walk, "decoder", t("walk.finished")), Text(note), table)


def consensus_page(walk: dict) -> Group:
    """Consensus sampling: every candidate drawn and its agreement with the replies drawn from the
    model as it is, and why a flawed one was ranked after the others; the first answers."""
    c = walk["consensus"]
    table = Table(box=None, padding=(0, 1))
    for column in ("#", t("walk.reply"), t("walk.agreement")):
        table.add_column(column, justify="left" if column == t("walk.reply") else "right")
    flawed = any(candidate.get("ranked_last") for candidate in c["candidates"])
    if flawed:
        table.add_column(t("walk.ranked_last"))
    for i, candidate in enumerate(c["candidates"]):
        row = [str(i + 1), printable(candidate["reply"]), f"{candidate['agreement']:.3f}"]
        if flawed:
            why = candidate.get("ranked_last")
            row.append(t(f"walk.ranked_last_{why}") if why else "")
        table.add_row(*row, style="bold green" if i == 0 else "dim" if candidate.get("ranked_last") else "")
    note = t("walk.consensus_note", candidates=len(c["candidates"]), evidence=c["evidence"])
    return Group(title(walk, "decoder", t("walk.consensus")), Text(note), table)


def teacher_forcing_page(walk: dict) -> Group:
    tf = walk["teacher_forcing"]
    table = Table(box=None, padding=(0, 1))
    for column in (
        t("walk.given"),
        t("walk.true_next"),
        "p",
        t("walk.would_write"),
        "p",
        walk["labels"]["cross_entropy"],
    ):
        table.add_column(column)
    for p in tf["positions"]:
        same = p["own"] == p["target"]
        own = Text(piece(p["own"]), style="green" if same else "red")
        table.add_row(
            piece(p["input"]),
            piece(p["target"]),
            f"{p['p_target']:.3f}",
            own,
            f"{p['p_own']:.3f}",
            f"{p['cross_entropy']:.2f}",
        )
    mean = t(
        "walk.mean", label=walk["labels"]["cross_entropy"], mean=f"{tf['mean_nll']:.3f}", total=f"{tf['total_nll']:.2f}"
    )
    return Group(
        title(walk, "teacher_forcing", f": {printable(tf['reply'])}"), Text(t("walk.teacher_note")), table, Text(mean)
    )
