"""The walk-through (`chatbot.explain`) as pages, one step each, as Rich renderables: printed by
`chatbot explain` and shown by the chat's walk-through screen alike."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from chatbot.validation import printable

STRIP = 24  # dimensions of a state drawn as a heat strip
BAR = 20  # characters of a probability bar


def strip(values: list[float], scale: float | None = None) -> Text:
    """A state's first STRIP dimensions as coloured blocks: red for positive, blue for negative."""
    shown = values[:STRIP]
    scale = scale or max((abs(v) for v in shown), default=1.0) or 1.0
    text = Text()
    for v in shown:
        level = int(55 + 200 * min(abs(v) / scale, 1.0))
        text.append("█", style=f"rgb({level},40,40)" if v >= 0 else f"rgb(40,40,{level})")
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
    else:
        out += [step_page(walk, step) for step in walk["steps"]]
    if "teacher_forcing" in walk:
        out.append(teacher_forcing_page(walk))
    return out


def pieces_page(walk: dict) -> Group:
    table = Table(box=None, padding=(0, 1))
    table.add_column("#", justify="right")
    table.add_column("piece")
    table.add_column("id", justify="right")
    for i, p in enumerate(walk["pieces"]):
        table.add_row(str(i), Text(piece(p["piece"]), style="dim" if p["byte"] else ""), str(p["id"]))
    notes = [Text(f"The model reads {len(walk['pieces'])} pieces of SentencePiece's vocabulary ('_' starts a word).")]
    if walk["context"]:
        notes.append(Text("<you> and <me> mark who said each turn: the message is the last <you> turn."))
    for f in walk["byte_fallback"]:
        notes.append(
            Text(f"'{printable(f['text'])}' is not in the vocabulary: byte fallback spells it {' '.join(f['pieces'])}.")
        )
    return Group(title(walk, "pieces", f": {printable(walk['message'])}"), table, *notes)


def encoder_page(walk: dict, layer: int) -> Group:
    pieces = [piece(p["piece"]) for p in walk["pieces"]]
    parts = [
        title(
            walk, "encoder", f" (layer {layer + 1}): each direction reads the pieces one by one, keeping two streams"
        ),
        Text(
            f"{walk['labels']['hidden']}: what it passes on;  {walk['labels']['cell']}: its memory. "
            f"Strips: the first {STRIP} dimensions (red +, blue -).",
            style="dim",
        ),
    ]
    for direction in ("forward", "backward"):
        table = Table(
            box=None,
            padding=(0, 1),
            title=f"{direction} ({'first to last' if direction == 'forward' else 'last to first'})",
        )
        for column in ("piece", "h", "|h|", "c", "|c|"):
            table.add_column(column)
        for s in walk["encoder"][layer][direction]:
            table.add_row(
                pieces[s["position"]], strip(s["h"]), f"{s['h_norm']:.2f}", strip(s["c"]), f"{s['c_norm']:.2f}"
            )
        parts.append(table)
    return Group(*parts)


def bridge_page(walk: dict) -> Group:
    b = walk["bridge"]
    table = Table(box=None, padding=(0, 1))
    table.add_column("")
    table.add_column("first dimensions")
    table.add_row("encoder's last states", strip(b["final"]))
    table.add_row("decoder's first h", strip(b["h"]))
    table.add_row("decoder's first c", strip(b["c"]))
    return Group(
        title(walk, "context_vector", ": the bridge"),
        Text(
            "Each direction's last state, side by side, becomes the decoder's first hidden and cell states. "
            "In the first seq2seq models this one fixed vector was all the decoder knew of the message; "
            "attention (next pages) lets every decoder step look back at every piece instead."
        ),
        table,
    )


def attention_table(walk: dict, scores: list[float] | None, weights: list[float]) -> Table:
    table = Table(box=None, padding=(0, 1))
    table.add_column("message piece")
    if scores is not None:
        table.add_column("score", justify="right")
    table.add_column("weight", justify="right")
    table.add_column("")
    for i, p in enumerate(walk["pieces"]):
        row = [piece(p["piece"])] + ([f"{scores[i]:.2f}"] if scores is not None else [])
        table.add_row(*row, f"{weights[i]:.3f}", bar(weights[i]))
    return table


def step_page(walk: dict, step: dict) -> Group:
    top = Table(box=None, padding=(0, 1), title=f"{walk['labels']['softmax']}: the most likely next pieces")
    top.add_column("piece")
    top.add_column("p", justify="right")
    top.add_column("")
    for name, p in step["top"]:
        top.add_row(piece(name), f"{p:.3f}", bar(p))
    chosen = Text.assemble(
        ("chosen: ", "bold"), (piece(step["chosen"]), "bold green"), f"  p {step['p']:.3f}  ({step['why']})"
    )
    parts = [
        title(walk, "decoder", f" step {step['step'] + 1}: it was given {piece(step['input'])!r}"),
        Text.assemble((walk["labels"]["attention"], "bold"), ": scores -> softmax -> weights (they sum to 1)"),
        attention_table(walk, step["scores"], step["attention"]),
        Text(f"{walk['labels']['context_vector']} = the weighted sum of the encoder states"),
        Text(f"(its norm {step['context_norm']:.2f})", style="dim"),
        top,
        chosen,
    ]
    if "gain" in step:
        parts.append(
            Text(f"the message made it {2.718281828 ** step['gain']:.1f} times likelier than no message would")
        )
    if "kept" in step:
        parts.append(Text("kept for the draw: " + ", ".join(f"{piece(n)} {p:.2f}" for n, p in step["kept"][:8])))
    return Group(*parts)


def beam_page(walk: dict, step: dict) -> Group:
    table = Table(box=None, padding=(0, 1))
    for column in ("", "from hypothesis", "piece", "score"):
        table.add_column(column)
    for c in step["kept"]:
        table.add_row(Text("kept", style="green"), str(c["parent"]), piece(c["piece"]), f"{c['score']:.2f}")
    for c in step["pruned"][:8]:
        table.add_row(Text("pruned", style="dim"), str(c["parent"]), piece(c["piece"]), f"{c['score']:.2f}")
    return Group(
        title(walk, "decoder", f" step {step['step'] + 1}: beam search keeps the {len(step['kept'])} best prefixes"),
        Text("each kept hypothesis offers its best continuations; the best of all of them go on (score: summed log p)"),
        table,
    )


def teacher_forcing_page(walk: dict) -> Group:
    tf = walk["teacher_forcing"]
    table = Table(box=None, padding=(0, 1))
    for column in ("given", "true next", "p(true)", "it would write", "p", "cross-entropy"):
        table.add_column(column)
    for p in tf["positions"]:
        same = p["own"] == p["target"]
        table.add_row(
            piece(p["input"]),
            piece(p["target"]),
            f"{p['p_target']:.3f}",
            Text(piece(p["own"]), style="green" if same else "red"),
            f"{p['p_own']:.3f}",
            f"{p['cross_entropy']:.2f}",
        )
    return Group(
        title(walk, "teacher_forcing", f": {printable(tf['reply'])}"),
        Text(
            "Fed the true previous piece at every position, as in training: the loss is the cross-entropy of the "
            "true next piece; its mean is what training minimises."
        ),
        table,
        Text(
            f"mean {walk['labels']['cross_entropy']} {tf['mean_nll']:.3f} nats per piece (total {tf['total_nll']:.2f})"
        ),
    )
