"""`chatbot retrain`: logged dialogs become training pairs, and the current model is fine-tuned on
them until it says what it was taught, with some of its original corpus replayed so it does not
forget (`docs/teaching.md` says how each default was chosen).

The log is opened read-only (WAL lets a running chat keep writing); the parent model directory
is never written; the new one records its lineage, with the taught replies it learned (the
chat's taught memory leaves those out), and is registered only if it learned something (or
`--force`). The new weights are those at the end of fine-tuning.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

from chatbot.errors import ChatbotError
from chatbot.i18n import tr
from chatbot.modeldir import load_model, output_directory
from chatbot.private_files import write_private
from chatbot.storage import LATEST_RATING, Storage, check_schema, inspect_log, refuse_odd_file
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


def rated_bad(conn: sqlite3.Connection) -> list[LoggedPair]:
    """Replies whose latest rating is bad and that were not corrected, with their messages: what
    the model should say less."""
    before = earlier_turns(conn)
    rows = conn.execute(
        "select u.text as source, u.id as source_id, b.text as reply, b.id as message_id "
        "from messages b join messages u on u.id = b.reply_to "
        f"where {LATEST_RATING} = -1 and not exists "
        "(select 1 from feedback f where f.message_id = b.id and f.kind = 'correction') order by b.id"
    )
    return [LoggedPair(r["source"], r["reply"], "rated bad", r["message_id"], before(r)) for r in rows]


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


OTHER_LANGUAGE = "another language"  # a dropped pair's reason: another bundled model answers it


def pairs_it_answers(lang: str | None, pairs: list[LoggedPair], bad: list[LoggedPair], dropped: Counter) -> tuple:
    """The pairs (and replies rated bad) that a bundled model of language `lang`, or one retrained
    from it (`chatbot.languages.bundled_language`), answers in the chat: those of its language,
    each with the turns before it in that language (what the chat lets it read); the rest are the
    other bundled model's, which the chat hands them to. Any other model (`lang` None) answers
    everything and keeps them all."""
    from chatbot.languages import language_of

    if lang is None:
        return pairs, bad

    def ours(p: LoggedPair) -> bool:  # as the chat routes a message; a turn is a reply to it only in its language
        return language_of(p.source) == lang and (p.kind in TAUGHT_KINDS or language_of(p.reply) == lang)

    def read(p: LoggedPair) -> LoggedPair:
        return replace(p, context=tuple(t for t in p.context if language_of(t) == lang))

    kept = [read(p) for p in pairs if ours(p)]
    if len(kept) < len(pairs):
        dropped[OTHER_LANGUAGE] += len(pairs) - len(kept)
    return kept, [read(p) for p in bad if language_of(p.source) == lang]


def held_out(p: LoggedPair) -> bool:
    return stable_percent(f"{p.source}\t{p.reply}") < HELD_OUT_PERCENT


def export_tsv(pairs: list[LoggedPair], path: Path) -> None:
    """The logged pairs as TSV, readable by their owner only: they are the log's conversations."""
    try:
        write_private(path, "".join(f"{p.source}\t{p.reply}\n" for p in pairs))
    except OSError as err:
        raise ChatbotError(tr("{path}: cannot write ({strerror})", path=path, strerror=err.strerror or err)) from None


def retrain(args) -> int:
    from chatbot.languages import bundled_language

    conn = open_log(args.db)
    try:
        pairs, dropped = clean(logged_pairs(conn, human_turns=not args.no_human_turns))
        bad = rated_bad(conn)
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
    lang = bundled_language(args.model)
    pairs, bad = pairs_it_answers(lang, pairs, bad, dropped)
    if dropped.get(OTHER_LANGUAGE):
        print(tr("left to the other language's model: {count} pairs", count=dropped[OTHER_LANGUAGE]))
    if not pairs:
        raise ChatbotError(tr("{db}: no usable pairs in this model's language", db=args.db))
    counts = Counter(p.kind for p in pairs)
    out = Path(args.out)
    if out.resolve() == Path(args.model).resolve():
        raise ChatbotError(tr("--out must differ from --model: the parent model is never overwritten"))
    with output_directory(out):  # a second retrain into `out` is refused while this one runs
        if (out / "config.json").exists():
            raise ChatbotError(tr("{out}: already holds a model; choose a new directory", out=out))
        return fine_tune(args, out, pairs, counts, bad, lang)


TAUGHT_KINDS = ("correction", "rated good")
LEAK_MESSAGES = 300  # chitchat test messages whose greedy replies are checked for taught words
RECALL_EVERY_SECONDS = 0.15  # recall is checked after an epoch once this share of the run's time allows
RECALL_PATIENCE = 10  # checks that find the most taught replies learned so far (some), and no more, end the run


def fine_tune(
    args, out: Path, pairs: list[LoggedPair], counts: Counter, bad: list[LoggedPair], lang: str | None
) -> int:
    """Fine-tune `args.model` on the logged pairs into `out` until it says what it was taught,
    report, and register it if it learned anything.

    Every correction and good reply is trained (a person wants each one learned), weighted
    `--taught-weight` times against the human's turns and the replayed pairs; a stable 10% of the
    human's turns is held out. A correction the model would not have begun so (`unexpected`: a
    cheer for a person's news) is left to the taught memory, which keeps it to its own message:
    learned alone, the model says it to every message it reads alike, bad news too; with
    `--neighbours` it is trained beside such messages instead. Training stops at the first epoch
    after which the model's greedy reply holds every trained reply's content words
    (`training.recall`), or after `--epochs`.
    Replies rated bad are made less likely by unlikelihood (`--unlikelihood`)."""
    from chatbot.device import resolve_device, set_threads
    from training.recall import common_words, greedy_replies
    from training.train import Trainer

    set_threads(args.threads)
    device = resolve_device(args.device)
    model, tokenizer, parent_config = load_model(args.model, device)
    if args.dropout is not None:
        if not 0.0 <= args.dropout < 1.0:
            raise ChatbotError(tr("dropout must lie in [0, 1)"))
        model.cfg.dropout = args.dropout
    taught_logged = [p for p in pairs if p.kind in TAUGHT_KINDS]
    turns = [p for p in pairs if p.kind not in TAUGHT_KINDS]
    taught, held = as_pairs(taught_logged), as_pairs([p for p in turns if held_out(p)])
    trained, left = taught_to_train(args, parent_config, model, tokenizer, taught_logged)
    train_pairs = trained * args.taught_weight + as_pairs([p for p in turns if not held_out(p)])
    if not train_pairs and not bad:
        raise ChatbotError(
            tr("nothing to train: every correction is left to the taught memory (--every-correction trains them)")
        )
    replayed = args.replay if args.replay is not None else default_replay(lang)
    base = load_pairs(replayed, "train") if replayed else []
    common = common_words(base[:20000])
    per_epoch = round(len(train_pairs) * args.replay_ratio) if base else 0
    replay = random.Random(args.seed).sample(base, min(len(base), per_epoch * args.epochs))  # fresh each epoch
    kept = kept_beside(args, lang, model, tokenizer, taught, base, replayed)
    train_pairs += kept
    english = lang in (None, "en")  # chitchat's test split is English: no measure of a Korean model
    if not english and not args.skip_chitchat:
        print(tr("no chitchat test: it is English"))
    measure = Yardstick(tokenizer, taught, as_pairs(bad), held, english and not args.skip_chitchat, common, args.quiet)
    before = measure(model)
    lineage = {
        "parent": str(Path(args.model).resolve()),
        "database": str(Path(args.db).resolve()),
        "message_ids": sorted({p.message_id for p in pairs}),
        "pairs": dict(counts),
        "replay": {"corpus": replayed, "ratio": args.replay_ratio, "pairs": len(replay), "neighbours": len(kept)},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    spread = spread_of(args, lang, model, tokenizer, trained, replayed, common)
    stop = RecallStop(tokenizer, trained, common, spread) if trained else None
    # the parent's taught gates (`chatbot.taught.gates_of`) hold for states a fine-tune barely moves
    gates = {"taught": parent_config["taught"]} if "taught" in parent_config else {}
    trainer = Trainer(
        out,
        model.cfg,
        fine_tune_config(args),
        pairs=(train_pairs, held or taught),  # validation: the held-out turns, else how the taught fit
        base=(model, tokenizer),
        extra={"lineage": {**lineage, "settings": vars_of(args)}, **gates},
        quiet=args.quiet,
        replay=replay,
        replay_per_epoch=per_epoch,
        after_epoch=stop,
        anchored=not args.no_anchor,
        negatives=as_pairs(bad),
        unlikelihood=args.unlikelihood,
    )
    if stop is not None:
        stop.add_negatives, stop.progress = trainer.add_negatives, trainer.progress
    trainer.train()
    new_model, _, _ = load_model(out, device)
    results = measure.compared(before, measure(new_model), trainer)
    results["left_to_memory"] = len(left)
    results["spread"] = len(spread.seen) if spread is not None else None
    if spread is not None and not stop.clean:  # ended by its budget or its rounds, not by a clean check
        results["spread_left"] = len(spread.negatives(new_model)[0])
    report(results, len(held), len(measure.unrelated))
    for p, old, new in zip(taught[:5], *[greedy_replies(m, tokenizer, taught[:5]) for m in (model, new_model)]):
        print(tr("  {message!r}\n    before: {before}\n    after:  {after}", message=p.source, before=old, after=new))
    # what this model says alone: recalled and held firmly (what sampling gives too); the memory keeps it too
    learned = [p for p, ok, sure in zip(taught_logged, measure.recall, measure.firm) if ok and sure]
    lineage["learned"] = [{"id": p.message_id, "reply": p.reply} for p in learned]
    if len(learned) < sum(measure.recall):
        print(
            tr(
                "  {n} of them held too loosely for sampling: the taught memory keeps them",
                n=sum(measure.recall) - len(learned),
            )
        )
    # ... and what it keeps to its own message, whatever the new model's states say (`unexpected`)
    lineage["kept_to_message"] = [{"id": p.message_id, "reply": p.reply} for p in left]
    return finish(args, out, lineage, results)


def taught_to_train(args, parent_config: dict, model, tokenizer, taught_logged: list[LoggedPair]) -> list[Pair]:
    """The taught pairs fine-tuning trains. A correction the model would not have begun so
    (`unexpected`) stays in the taught memory, which keeps it to its own message, unless
    `--neighbours` or `--every-correction` asks for it; where the model's gates turn that rule off
    (the Korean model's: its facts too begin as it would not), all are trained; so are replies
    rated good (the model's own: begun so). Says how many it leaves, and returns them too."""
    taught = as_pairs(taught_logged)
    if not keeps_to_its_message(parent_config) or args.neighbours or args.every_correction:
        return taught, []
    odd = unexpected(model, tokenizer, taught)
    left = [o and q.kind == "correction" for q, o in zip(taught_logged, odd)]
    trained = [p for p, out in zip(taught, left) if not out]
    if len(trained) < len(taught):
        print(
            tr(
                "left to the taught memory: {n} of {total} corrections, those the model would not have begun so "
                "(learned alone, they would be said to messages it reads alike; --neighbours K trains them beside "
                "such messages, --every-correction alone)",
                n=len(taught) - len(trained),
                total=sum(p.kind == "correction" for p in taught_logged),
            )
        )
    return trained, [q for q, out in zip(taught_logged, left) if out]


def spread_of(args, lang: str | None, model, tokenizer, trained: list[Pair], replayed, common) -> Spread | None:
    """The `Spread` check over `--spread-pool` validation pairs (a stable sample) of what the model
    was trained on, where it is at hand, else of the replayed corpus: the messages it knows how to
    answer, which a taught reply must not take over."""
    corpus = own_corpus(lang) or replayed
    if not (args.spread_pool and trained and corpus):
        return None
    pool = load_pairs(corpus, "valid")
    pool = random.Random(args.seed).sample(pool, min(len(pool), args.spread_pool))
    if not pool:
        return None
    was_training = model.training
    model.eval()
    spread = Spread(model, tokenizer, trained, pool, common)
    model.train(was_training)
    return spread


def kept_beside(args, lang: str | None, model, tokenizer, taught: list[Pair], base: list[Pair], replayed) -> list[Pair]:
    """With `--neighbours K`, the `neighbours` of the corrections, searched in what the model was
    trained on (read only when asked for), else in the replayed corpus; says how many."""
    if not args.neighbours or not taught:
        return []
    own = own_corpus(lang)
    pool = base if own in (None, replayed) else load_pairs(own, "train")
    kept = neighbours(model, tokenizer, taught, pool, args.neighbours, args.seed) if pool else []
    if kept:
        print(
            tr(
                "kept beside the corrections: {n} replayed pairs whose messages the model reads like theirs",
                n=len(kept),
            )
        )
    return kept


NAMED_CORPORA = ("chitchat", "listening", "listening-ko", "sample", "phrases")


def default_replay(lang: str | None) -> str:
    """What a fine-tune replays by default: chitchat; for the Korean model (and one retrained from
    it), what the bundled Korean model was trained on where it is at hand (ChatbotData.csv is not
    shipped), else the Korean listening conversations alone, which anchor it on fewer kinds of
    message: more taught words leak into other replies. The English model's own corpus (chitchat
    and the listening conversations) was tried: its questions to the bot, answered otherwise,
    unteach a fact's rewordings (docs/teaching.md)."""
    if lang != "ko":
        return "chitchat"
    own = own_corpus(lang)
    if own is None:
        print(tr("replaying {fallback}: the model's own corpus ({corpus}) is not here", fallback="listening-ko",
                 corpus=trained_on(lang) or "?"))  # fmt: skip
    return own or "listening-ko"


def trained_on(lang: str | None) -> str:
    """The corpus the bundled model of `lang` was trained on, as its config.json names it ("" if none)."""
    from chatbot.languages import BUNDLED_MODELS
    from chatbot.modeldir import read_config

    if lang not in BUNDLED_MODELS:
        return ""
    return str(read_config(BUNDLED_MODELS[lang]).get("train", {}).get("corpus", ""))


def own_corpus(lang: str | None) -> str | None:
    """That corpus where every part of it is at hand (ChatbotData.csv is not shipped), else None."""
    own = trained_on(lang)
    if own and all(part in NAMED_CORPORA or Path(part).is_file() for part in own.split("+")):
        return own
    return None


def keeps_to_its_message(config: dict) -> bool:
    """Whether this model's taught memory follows a reply it would not have begun so only for its
    own message (its gate `alone` above `start`; `chatbot.taught.gates_of`)."""
    from chatbot.taught import ALONE, START, gates_of

    gates = gates_of(config)
    return gates.get("alone", ALONE) > gates.get("start", START)


def unexpected(model, tokenizer, taught: list[Pair]) -> list[bool]:
    """Per taught pair: the model would not have begun its reply so (the first piece, as written or
    capitalised, under `chatbot.taught.UNEXPECTED` after its message), as a reaction to a person's
    news often is."""
    import torch

    from chatbot.decoding.replies import prepare
    from chatbot.engine import as_engine
    from chatbot.taught import UNEXPECTED, capitalised_opener, read_states
    from chatbot.tokenizer import EOS

    if not taught:
        return []
    engine, was_training = as_engine(model), model.training
    model.eval()
    with torch.inference_mode():
        sources = [prepare(tokenizer, engine, p.source, p.context)[0] for p in taught]
        firsts = [tokenizer.encode(p.reply)[:1] or [EOS] for p in taught]
        _, openers = read_states(engine, sources, firsts, [capitalised_opener(tokenizer, p.reply) for p in taught])
    model.train(was_training)
    return [opener < UNEXPECTED for opener in openers]


NEIGHBOUR_POOL = 30_000  # replayed pairs searched for each correction's neighbours (a stable sample)


def neighbours(model, tokenizer, taught: list[Pair], pool: list[Pair], k: int, seed: int) -> list[Pair]:
    """The corpus pairs whose messages the model reads most like the message of each correction
    it would not have begun so (its first piece under `chatbot.taught.UNEXPECTED`): the `k` nearest
    by the decoder's first state, which holds how the model means to begin its reply. Trained
    beside the corrections every epoch with their own replies, they keep such a correction to its
    message: taught "Nice! A clean room feels great." for a tidied room, the model would otherwise
    say it to "I lost my job today.", which it reads alike (docs/teaching.md). A correction the
    model would have begun so (a fact: "My name is Juniper.") gets none: its neighbours are its
    rewordings, whose corpus replies would unteach it. Searched in a stable sample of the pool."""
    import torch

    from chatbot.decoding.replies import prepare
    from chatbot.engine import as_engine
    from chatbot.taught import read_states
    from chatbot.tokenizer import EOS

    if k <= 0 or not pool:
        return []
    taught = [p for p, odd in zip(taught, unexpected(model, tokenizer, taught)) if odd]
    if not taught:
        return []
    engine, was_training = as_engine(model), model.training
    model.eval()
    pool = random.Random(seed).sample(pool, min(len(pool), NEIGHBOUR_POOL))

    def first_states(pairs: list[Pair], batch: int = 256) -> torch.Tensor:
        states = []
        for start in range(0, len(pairs), batch):
            sources = [prepare(tokenizer, engine, p.source, p.context)[0] for p in pairs[start : start + batch]]
            read, _ = read_states(engine, sources, [[EOS]] * len(sources))
            states += [torch.nn.functional.normalize(s[0].float(), dim=-1) for s in read]
        return torch.stack(states)  # (N, A)

    with torch.inference_mode():
        near = (first_states(taught) @ first_states(pool).T).topk(min(k, len(pool)), dim=-1).indices  # (T, k)
    model.train(was_training)
    return [pool[i] for i in sorted({int(i) for row in near for i in row})]


def fine_tune_config(args):
    """The training settings of a fine-tune on a log (`training.train.TrainConfig`)."""
    from training.train import TrainConfig

    return TrainConfig(
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
        max_tokens=args.max_tokens,
        log_every=10,
        keep="last",
        dropout_from_epoch=0,  # a few small epochs over the same pairs: regularise from the start
        average_from=1.0,  # a short fine-tune keeps its last weights, as its figures were measured
        blank_source=0.0,
    )


class Yardstick:
    """What the report compares, for the parent and the new model alike: taught recall, replies
    rated bad still given, perplexity of the held-out turns and of the chitchat test, and the
    greedy replies to chitchat test messages (for leak)."""

    def __init__(self, tokenizer, taught, bad, held, chitchat: bool, common, quiet: bool):
        self.tokenizer, self.taught, self.bad, self.held, self.common = tokenizer, taught, bad, held, common
        self.test = load_pairs("chitchat", "test") if chitchat else []
        self.unrelated = self.test[:LEAK_MESSAGES]
        self.shown = None if quiet else tr("chitchat test")  # a progress bar on a terminal: 2,211 pairs take a while
        self.recall: list[bool] = []  # the last model's, per taught pair
        self.firm: list[bool] = []  # ... and whether it holds each firmly (`held_firmly`)

    def __call__(self, model) -> dict:
        from training.evaluate import evaluate_pairs
        from training.recall import greedy_replies, held_firmly, recalled, still_said

        def word_ppl(pairs, show=None):
            return evaluate_pairs(model, self.tokenizer, pairs, show=show)["word_ppl"] if pairs else None

        replies = as_replies_run(model)  # what it says is read as the chat will say it
        self.recall = recalled(replies, self.tokenizer, self.taught, self.common)
        self.firm = held_firmly(replies, self.tokenizer, self.taught)
        return {
            "recall": self.recall,
            "bad": still_said(replies, self.tokenizer, self.bad),
            "held": word_ppl(self.held),
            "test": word_ppl(self.test, self.shown),
            "unrelated": greedy_replies(replies, self.tokenizer, self.unrelated),
        }

    def compared(self, before: dict, after: dict, trainer) -> dict:
        from training.recall import leak

        taught_replies = [p.reply for p in self.taught]
        return {
            "taught": len(self.taught),
            "taught_recall_before": share(before["recall"]),
            "taught_recall_after": share(after["recall"]),
            "rated_bad": len(self.bad),
            "bad_said_before": share(before["bad"]),
            "bad_said_after": share(after["bad"]),
            "leak": leak(before["unrelated"], after["unrelated"], taught_replies, self.common) if self.test else None,
            "held_out_before": before["held"],
            "held_out_after": after["held"],
            "test_before": before["test"],
            "test_after": after["test"],
            "steps": trainer.step,
            "epochs": trainer.epoch,
        }


def as_replies_run(model):
    """The model as replies run it by default on its device (`--precision auto`): int8 weights on
    a CPU, whose greedy reply can differ from the float weights' by a word. What the new model
    learned is what it says so."""
    from chatbot.engine import build_engine

    return build_engine(model, "int8" if next(model.parameters()).device.type == "cpu" else "flat")


def finish(args, out: Path, lineage: dict, results: dict) -> int:
    """The lineage and results beside the new model; registered in the log's models table if it
    learned something it was taught and says no taught reply where it was not taught for (or
    `--force`): a model that cheers at bad news is worse than its parent with the taught memory."""
    write_lineage(out, lineage)
    (out / "retrain.json").write_text(json.dumps({**lineage, "results": results}, indent=2) + "\n")
    if not (improved(results) or args.force):
        print(
            tr(
                "the new model learned nothing it was taught: not registered (--force registers it); it is in {out}",
                out=out,
            )
        )
        return 1
    if results.get("spread_left") and not args.force:
        print(
            tr(
                "the new model says taught replies to messages they were not taught for: not registered (the taught "
                "memory still gives each to its own message; more --max-minutes lets training undo it; --force "
                "registers it); it is in {out}",
                out=out,
            )
        )
        return 1
    store = Storage(args.db)  # the models table only: retraining never writes to dialog tables
    store.register_model(str(out.resolve()), parent=lineage["parent"], info=results)
    store.close()
    print(tr("registered {out}: chat with it by `chatbot chat --model {out}`", out=out))
    return 0


SPREAD_SHARE = 0.005  # a taught reply come into more than this share of the pool's replies has spread
SPREAD_ROUNDS = 3  # times the spread is trained against before recall alone may end the run
SPREAD_FROM = 0.5  # of the run's time budget: from here on spread is checked before every reply is recalled


class Spread:
    """Where fine-tuning makes the model say a taught reply to messages it was not taught for: the
    validation messages of its corpus (`--spread-pool`, `spread_of`) whose greedy reply changed and now
    holds a word pair of the taught reply. A reply come so into more than `SPREAD_SHARE` of them is
    over-generalised (learned for its message alone, "That sounds relaxing." for an afternoon's
    reading is said to a broken-down car): those messages, with it as their reply, become replies to
    say less (unlikelihood), and training goes on. A fact is asked for by few of them: it stays."""

    def __init__(self, model, tokenizer, taught: list[Pair], pool: list[Pair], common: frozenset[str]):
        from training.recall import content_words, greedy_replies, word_pairs

        self.tokenizer, self.taught, self.pool, self.common = tokenizer, taught, pool, common
        self.pairs = [word_pairs(p.reply, common) for p in taught]
        self.asked = [content_words(p.source, common) for p in taught]
        self.before = greedy_replies(model, tokenizer, pool)
        self.seen: set[tuple[str, str]] = set()
        self.rounds = 0

    def negatives(self, model) -> tuple[list[Pair], list[Pair]]:
        """The (message, taught reply) pairs of every taught reply that has spread, and those of
        them not found before."""
        from training.recall import content_words, greedy_replies, word_pairs

        after = greedy_replies(model, self.tokenizer, self.pool)
        changed = [(p, word_pairs(a, self.common)) for p, b, a in zip(self.pool, self.before, after) if a != b]
        found = []
        for taught, pairs, asked in zip(self.taught, self.pairs, self.asked):
            # a message that shares a content word with the taught one may be its rewording: not spread
            said = [p for p, got in changed if got & pairs and not asked & content_words(p.source, self.common)]
            if len(said) > SPREAD_SHARE * len(self.pool):
                found += [Pair(p.source, taught.reply, p.context) for p in said]
        new = [p for p in found if (p.source, p.reply) not in self.seen]
        self.seen |= {(p.source, p.reply) for p in new}
        return found, new


class RecallStop:
    """Ends fine-tuning after the first epoch at which the model recalls every taught reply and no
    taught reply has spread (`Spread`; spread found is trained against, and training goes on while
    it lasts, up to `SPREAD_ROUNDS` checks), or once `RECALL_PATIENCE` checks have found the most
    of them learned so far and no more (a run whose count fell back is not stopped by it): a reply
    the model cannot yet hold (a cat named "Mochi" came out "Mo?" for 140 epochs) stays in the
    taught memory rather than holding the run to its last epoch. The check is a greedy decode of
    each taught message; with many taught pairs and short epochs it runs only as often as it costs
    less than a share of the training time. From `SPREAD_FROM` of the run's budget on, spread is
    checked and trained against at every check, recalled or not: on a slow machine the budget may
    end before recall is complete, and the spread check with it."""

    def __init__(self, tokenizer, taught: list[Pair], common: frozenset[str], spread: Spread | None = None):
        self.tokenizer, self.taught, self.common, self.spread = tokenizer, taught, common, spread
        self.seconds, self.last = 0.0, time.monotonic()
        self.add_negatives = None  # the trainer's, where spread is checked
        self.progress = None  # the trainer's: how far through its budget the run is
        self.clean = False  # a check found every taught reply recalled and none spread
        self.most, self.at_most = 0, 0  # the most taught replies learned at a check, and checks that found as many

    def __call__(self, model) -> str | None:
        from training.recall import held_firmly, recalled

        since = time.monotonic() - self.last
        if self.seconds > RECALL_EVERY_SECONDS * since:
            return None
        start = time.monotonic()
        model.eval()
        learned = sum(
            r and f
            for r, f in zip(
                recalled(model, self.tokenizer, self.taught, self.common),
                held_firmly(model, self.tokenizer, self.taught),
            )
        )
        ok = learned == len(self.taught)
        self.most, self.at_most = (
            (learned, 1) if learned > self.most else (self.most, self.at_most + (learned == self.most > 0))
        )
        spread = self.spread
        # late in a slow run, before every reply is recalled: its budget may end before recall does
        late = not ok and self.progress is not None and self.progress() >= SPREAD_FROM
        if spread is not None and (ok and spread.rounds < SPREAD_ROUNDS or late):
            found, new = spread.negatives(model)
            if found:  # still said there: trained on, against those found before too
                spread.rounds += ok
                if new:
                    self.add_negatives(new)
                print(
                    tr(
                        "taught replies said to {n} messages of the model's corpus they were not taught for: trained "
                        "to say them less there",
                        n=len(found),
                    ),
                    flush=True,
                )
                ok = False
            elif ok:
                self.clean = True
        model.train()
        self.seconds, self.last = time.monotonic() - start, time.monotonic()
        if ok:
            return tr("every taught reply recalled")
        if self.at_most >= RECALL_PATIENCE:
            return tr(
                "{n} checks learned no more taught replies ({learned} of {count}): the taught memory keeps the rest",
                n=self.at_most,
                learned=self.most,
                count=len(self.taught),
            )
        return None


def as_pairs(logged: list[LoggedPair]) -> list[Pair]:
    return [Pair(p.source, p.reply, p.context) for p in logged]


def share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def improved(results: dict) -> bool:
    """Worth registering: it recalls more of what it was taught, gives fewer of the replies rated
    bad, or (neither logged) reads the held-out turns better."""
    if results["taught"] or results["rated_bad"]:
        return (results["taught_recall_after"] or 0) > (results["taught_recall_before"] or 0) or (
            results["bad_said_after"] or 0
        ) < (results["bad_said_before"] or 0)
    return results["held_out_before"] is not None and results["held_out_after"] < results["held_out_before"]


def report(results: dict, held: int, unrelated: int) -> None:
    if results["taught"]:
        print(
            tr(
                "taught replies recalled ({count}): {before:.0%} -> {after:.0%} (greedy, the taught memory off)",
                count=results["taught"],
                before=results["taught_recall_before"],
                after=results["taught_recall_after"],
            )
        )
        if results.get("left_to_memory"):
            n = results["left_to_memory"]
            print(tr("  {n} of them left to the taught memory, which gives them to their own messages", n=n))
        if results.get("spread"):
            print(tr("  kept from {n} messages of its corpus they had come to be said to", n=results["spread"]))
        if results.get("spread_left"):
            print(
                tr(
                    "  still said to {n} messages of its corpus they were not taught for: training ended first",
                    n=results["spread_left"],
                )
            )
    if results["rated_bad"]:
        print(
            tr(
                "replies rated bad still given ({count}): {before:.0%} -> {after:.0%} (greedy)",
                count=results["rated_bad"],
                before=results["bad_said_before"],
                after=results["bad_said_after"],
            )
        )
    if results["held_out_before"] is not None:
        change = 100 * (results["held_out_after"] / results["held_out_before"] - 1)
        print(
            tr(
                "held-out logged pairs ({count}): word ppl {before:.1f} -> {after:.1f} ({change:+.1f}%)",
                count=held,
                before=results["held_out_before"],
                after=results["held_out_after"],
                change=change,
            )
        )
    if results["test_before"] is not None:
        change = 100 * (results["test_after"] / results["test_before"] - 1)
        print(
            tr(
                "chitchat test: word ppl {before:.1f} -> {after:.1f} ({change:+.1f}%); taught words leak into "
                "{leak:.1%} of {count} test replies",
                before=results["test_before"],
                after=results["test_after"],
                change=change,
                leak=results["leak"],
                count=unrelated,
            )
        )


def write_lineage(out: Path, lineage: dict) -> None:
    """The lineage in the new model's config.json, with what it learned (atomic, like every save)."""
    from chatbot.modeldir import atomic_write, read_config

    config = read_config(out)
    config["lineage"] = {**config.get("lineage", {}), **lineage}
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(out / "config.json", lambda p: Path(p).write_text(text))


def vars_of(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "run"}


if __name__ == "__main__":
    sys.exit("run as `chatbot retrain`")
