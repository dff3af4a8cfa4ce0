"""`chatbot retrain`: logged dialogs become training pairs, and the current model is fine-tuned on
them with some of its original corpus replayed so it does not forget.

The log is opened read-only (WAL lets a running chat keep writing); the parent model directory
is never written; the new one records its lineage and is registered only if it is better on the
held-out logged pairs (or `--force`). The new weights are those at the end of fine-tuning: a log
holds few pairs, so the held-out slice judges the result rather than picking a checkpoint.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

from chatbot.errors import ChatbotError
from chatbot.i18n import tr
from chatbot.modeldir import load_model, output_directory
from chatbot.private_files import write_private
from chatbot.storage import LATEST_RATING, check_schema, inspect_log, refuse_odd_file
from corpora import Pair, load_pairs
from corpora.pairs import MAX_CONTEXT, stable_percent

MAX_CHARS = 1000  # longer logged turns are left out of training
HELD_OUT_PERCENT = 10


@dataclass(frozen=True)
class LoggedPair:
    source: str
    reply: str
    kind: str  # 'correction', 'rated good' or 'human turn'
    message_id: int  # the message the target text comes from (or is attached to)
    context: tuple[str, ...] = ()  # the turns before the source in its conversation, oldest first


def open_log(path: Path) -> sqlite3.Connection:
    """A read-only connection to a log that passes the chat's own checks (`inspect_log`: not
    damaged, not another application's, not from a newer version); each failure one line."""
    if not Path(path).exists():
        raise ChatbotError(tr("{path}: no such database", path=path))
    refuse_odd_file(Path(path))
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=5)
    except sqlite3.DatabaseError as err:
        raise ChatbotError(tr("{path}: cannot read the chat database ({reason})", path=path, reason=err)) from None
    conn.row_factory = sqlite3.Row
    try:
        inspect_log(conn, Path(path))
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
        missing = {"messages", "feedback"} - tables
        if missing:
            raise ChatbotError(
                tr("{path}: not a chat log (no table {names})", path=path, names=", ".join(sorted(missing)))
            )
        check_schema(sqlite_utils.Database(conn), Path(path))  # the chat's own: retraining registers into `models`
    except sqlite3.DatabaseError as err:
        conn.close()
        raise ChatbotError(tr("{path}: cannot read the chat database ({reason})", path=path, reason=err)) from None
    except BaseException:
        conn.close()
        raise
    return conn


def logged_pairs(conn: sqlite3.Connection, human_turns: bool = True) -> list[LoggedPair]:
    """Corrections, replies rated good (latest rating wins; bad ones never become targets) and,
    unless turned off, the human's own turns as replies to the bot message before them."""
    before = earlier_turns(conn)
    pairs = []
    corrections = conn.execute(
        "select u.text as source, u.id as source_id, f.text as reply, f.message_id from feedback f "
        "join messages b on b.id = f.message_id join messages u on u.id = b.reply_to where f.kind = 'correction' "
        "order by f.id"
    )
    pairs += [LoggedPair(r["source"], r["reply"], "correction", r["message_id"], before(r)) for r in corrections]
    rated = conn.execute(
        "select u.text as source, u.id as source_id, b.text as reply, b.id as message_id "
        "from messages b join messages u on u.id = b.reply_to "
        f"where {LATEST_RATING} = 1 "
        "order by b.id"
    )
    pairs += [LoggedPair(r["source"], r["reply"], "rated good", r["message_id"], before(r)) for r in rated]
    if human_turns:
        turns = conn.execute(
            "select b.text as source, b.id as source_id, u.text as reply, u.id as message_id from messages b "
            "join messages u "
            "on u.conversation_id = b.conversation_id and u.id = "
            "(select min(id) from messages n where n.conversation_id = b.conversation_id and n.id > b.id) "
            "where b.role = 'bot' and u.role = 'user' order by u.id"
        )
        pairs += [LoggedPair(r["source"], r["reply"], "human turn", r["message_id"], before(r)) for r in turns]
    return pairs


def earlier_turns(conn: sqlite3.Connection):
    """A function of a row with `source_id`: the texts of the messages before that message in its
    conversation, oldest first (at most MAX_CONTEXT of them), as training pairs carry them."""
    conversations: dict[int, list[tuple[int, str]]] = {}
    for r in conn.execute("select id, conversation_id, text from messages order by id"):
        conversations.setdefault(r["conversation_id"], []).append((r["id"], r["text"]))
    position = {mid: (cid, i) for cid, rows in conversations.items() for i, (mid, _) in enumerate(rows)}

    def before(row) -> tuple[str, ...]:
        cid, i = position[row["source_id"]]
        return tuple(text for _, text in conversations[cid][max(0, i - MAX_CONTEXT) : i])

    return before


def clean(pairs: list[LoggedPair]) -> tuple[list[LoggedPair], Counter]:
    """Deduplicate (first kind wins: corrections before ratings before human turns) and length-filter."""
    seen, kept, dropped = set(), [], Counter()
    for p in pairs:
        source, reply = " ".join(p.source.split()), " ".join(p.reply.split())
        if not source or not reply or len(source) > MAX_CHARS or len(reply) > MAX_CHARS:
            dropped["too long or empty"] += 1
            continue
        if (source, reply) in seen:
            dropped["duplicate"] += 1
            continue
        seen.add((source, reply))
        kept.append(LoggedPair(source, reply, p.kind, p.message_id, p.context))
    return kept, dropped


def held_out(p: LoggedPair) -> bool:
    return stable_percent(f"{p.source}\t{p.reply}") < HELD_OUT_PERCENT


def export_tsv(pairs: list[LoggedPair], path: Path) -> None:
    """The logged pairs as TSV, readable by their owner only: they are the log's conversations."""
    try:
        write_private(path, "".join(f"{p.source}\t{p.reply}\n" for p in pairs))
    except OSError as err:
        raise ChatbotError(tr("{path}: cannot write ({strerror})", path=path, strerror=err.strerror or err)) from None


def retrain(args) -> int:
    conn = open_log(args.db)
    try:
        pairs, dropped = clean(logged_pairs(conn, human_turns=not args.no_human_turns))
    except sqlite3.DatabaseError as err:
        raise ChatbotError(tr("{db}: cannot read the chat log ({reason})", db=args.db, reason=err)) from None
    finally:
        conn.close()
    counts = Counter(p.kind for p in pairs)
    kinds = ", ".join(f"{n} {k}" for k, n in counts.items()) or tr("none")
    print(
        tr(
            "logged pairs: {count} ({kinds}; dropped {dropped}: {why})",
            count=len(pairs),
            kinds=kinds,
            dropped=sum(dropped.values()),
            why=dict(dropped) or tr("none"),
        )
    )
    if not pairs:
        raise ChatbotError(
            tr("{db}: no usable pairs (no corrections, no replies rated good, no human turns)", db=args.db)
        )
    if args.export:
        export_tsv(pairs, args.export)
        print(tr("wrote {count} pairs to {path}", count=len(pairs), path=args.export))
        return 0
    out = Path(args.out)
    if out.resolve() == Path(args.model).resolve():
        raise ChatbotError(tr("--out must differ from --model: the parent model is never overwritten"))
    with output_directory(out):  # a second retrain into `out` is refused while this one runs
        if (out / "config.json").exists():
            raise ChatbotError(tr("{out}: already holds a model; choose a new directory", out=out))
        return fine_tune(args, out, pairs, counts)


def fine_tune(args, out: Path, pairs: list[LoggedPair], counts: Counter) -> int:
    """Fine-tune `args.model` on the logged pairs into `out`, report, and register it if better."""
    from chatbot.decoding import GreedySettings, reply
    from chatbot.device import resolve_device, set_threads
    from chatbot.storage import Storage
    from training.evaluate import evaluate_pairs, perplexity_note
    from training.train import TrainConfig, Trainer

    set_threads(args.threads)
    device = resolve_device(args.device)
    model, tokenizer, parent_config = load_model(args.model, device)
    if args.dropout is not None:
        if not 0.0 <= args.dropout < 1.0:
            raise ChatbotError(tr("dropout must lie in [0, 1)"))
        model.cfg.dropout = args.dropout
    held = [p for p in pairs if held_out(p)]
    train_logged = [p for p in pairs if not held_out(p)]
    if not held:  # too few pairs for a hash slice: hold out the last one
        held, train_logged = pairs[-1:], pairs[:-1] or pairs
    held_pairs = [Pair(p.source, p.reply, p.context) for p in held]
    rng = random.Random(args.seed)
    replay, per_epoch = [], round(len(train_logged) * args.replay_ratio)
    if args.replay and args.replay_ratio > 0:
        # fresh base pairs in every epoch: a few hundred base pairs repeated epoch after epoch
        # get memorised while the rest of the corpus is forgotten
        base = load_pairs(args.replay, "train")
        replay = rng.sample(base, min(len(base), per_epoch * args.epochs))
    train_pairs = [Pair(p.source, p.reply, p.context) for p in train_logged]
    test = load_pairs("chitchat", "test") if not args.skip_chitchat else []
    before_held = evaluate_pairs(model, tokenizer, held_pairs)["word_ppl"]
    shown = None if args.quiet else tr("chitchat test")  # a progress bar on a terminal: 2,211 pairs take a while
    before_test = evaluate_pairs(model, tokenizer, test, show=shown)["word_ppl"] if test else None
    lineage = {
        "parent": str(Path(args.model).resolve()),
        "database": str(Path(args.db).resolve()),
        "message_ids": sorted({p.message_id for p in pairs}),
        "pairs": dict(counts),
        "replay": {"corpus": args.replay, "ratio": args.replay_ratio, "pairs": len(replay)},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    cfg = TrainConfig(
        corpus=f"log:{args.db}",
        epochs=args.epochs,
        max_minutes=args.max_minutes,
        lr=args.lr,
        warmup_steps=10,
        eval_every=args.eval_every,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        max_tokens=parent_config.get("train", {}).get("max_tokens", 6000),
        log_every=10,
        keep="last",
        dropout_from_epoch=0,  # a few small epochs over the same pairs: regularise from the start
        average_from=1.0,  # a short fine-tune keeps its last weights, as its figures were measured
    )
    trainer = Trainer(
        out,
        model.cfg,
        cfg,
        pairs=(train_pairs, held_pairs),
        base=(model, tokenizer),
        extra={"lineage": {**lineage, "settings": vars_of(args)}},
        quiet=args.quiet,
        replay=replay,
        replay_per_epoch=per_epoch,
    )
    trainer.train()
    new_model, _, _ = load_model(out, device)
    held_result = evaluate_pairs(new_model, tokenizer, held_pairs)
    after_held = held_result["word_ppl"]
    after_test = evaluate_pairs(new_model, tokenizer, test, show=shown)["word_ppl"] if test else None
    note = perplexity_note(held_result)
    change = 100 * (after_held / before_held - 1)
    print(
        tr(
            "held-out logged pairs ({count}): word ppl {before:.1f} -> {after:.1f} ({change:+.1f}%)",
            count=len(held_pairs),
            before=before_held,
            after=after_held,
            change=change,
        )
        + (f"; {note}" if note else "")
    )
    if test:
        change = 100 * (after_test / before_test - 1)
        print(
            tr(
                "chitchat test ({count}): word ppl {before:.1f} -> {after:.1f} ({change:+.1f}%)",
                count=len(test),
                before=before_test,
                after=after_test,
                change=change,
            )
        )
    shown = held[:3] + train_logged[:2]
    messages, contexts = [p.source for p in shown], [p.context for p in shown]
    old = reply(model, tokenizer, messages, GreedySettings(), contexts=contexts)
    new = reply(new_model, tokenizer, messages, GreedySettings(), contexts=contexts)
    for message, o, n in zip(messages, old, new):
        print(
            tr(
                "  {message!r}\n    before: {before}\n    after:  {after}",
                message=message,
                before=o[0].text,
                after=n[0].text,
            )
        )
    results = {
        "held_out_before": before_held,
        "held_out_after": after_held,
        "test_before": before_test,
        "test_after": after_test,
    }
    (out / "retrain.json").write_text(json.dumps({**lineage, "results": results}, indent=2) + "\n")
    if after_held >= before_held and not args.force:
        print(
            tr(
                "the new model is worse on the held-out logged pairs: not registered "
                "(--force registers it anyway); it is in {out}",
                out=out,
            )
        )
        return 1
    store = Storage(args.db)  # the models table only: retraining never writes to dialog tables
    store.register_model(str(out.resolve()), parent=lineage["parent"], info=results)
    store.close()
    print(tr("registered {out}: chat with it by `chatbot chat --model {out}`", out=out))
    return 0


def vars_of(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "run"}


if __name__ == "__main__":
    sys.exit("run as `chatbot retrain`")
