"""The `chatbot` command: one subcommand per task, every user error a one-line message."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import fields
from pathlib import Path

from chatbot.errors import ChatbotError
from chatbot.i18n import set_language, t, tr
from chatbot.validation import check, clean_text, max_threads, parse, printable, reference_precision, show

MAX_BATCH = 256  # messages decoded together by `chatbot reply`
HELD_BY_LAUNCHER = "CHATBOT_OUTPUT_LOCKED"  # set for `--nproc` workers: their launcher locked the output


class Formatter(argparse.HelpFormatter):
    """Help wrapped by the columns text takes on screen: a Hangul syllable takes two."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        from rich.cells import cell_len

        lines, line = [], ""
        for word in text.split():
            joined = f"{line} {word}" if line else word
            if line and cell_len(joined) > width:
                lines.append(line)
                joined = word
            line = joined
        return [*lines, line] if line else lines


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (`--help` shows the rest), in the interface's
    language: the flag first, then what is wrong with it; --help in that language too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)
        self._positionals.title, self._optionals.title = tr("positional arguments"), tr("options")
        for action in self._actions:
            if action.dest == "help":
                action.help = tr("show this help message and exit")

    def format_usage(self) -> str:
        return tr("usage: ") + super().format_usage().removeprefix("usage: ")

    def format_help(self) -> str:
        return tr("usage: ") + super().format_help().removeprefix("usage: ")

    def error(self, message: str):
        flag = re.match(r"argument ([^:]+): ", message)
        message = message[flag.end() :] if flag else message
        for pattern, template in ARGPARSE_MESSAGES:
            if said := re.fullmatch(pattern, message):
                message = tr(template, **said.groupdict())
        self.exit(2, f"{self.prog}: {t('cli.error')}: {flag.group(1) + ': ' if flag else ''}{message}\n")


ARGPARSE_MESSAGES = [  # argparse's own messages, read back into the catalogue's templates
    (r"invalid choice: (?P<value>.+) \(choose from (?P<names>.+)\)", "invalid choice: {value} (choose from {names})"),
    (r"the following arguments are required: (?P<names>.+)", "the following arguments are required: {names}"),
    (r"unrecognized arguments: (?P<names>.+)", "unrecognized arguments: {names}"),
    (r"expected one argument", "expected one argument"),
]


def ranged(kind: type, low=None, high=None):
    """An argparse type: text parsed as `kind` (int, float), finite and within [low, high]."""

    def convert(text: str):
        try:
            return check("", parse("", text, kind), kind, low, high)
        except ChatbotError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = "whole number" if kind is int else "number"  # what argparse calls it in errors
    return convert


def add_ranged(group, flag: str, ranges: dict, help: str | None = None, **kwargs) -> None:
    """A numeric flag whose type and range come from the setting it sets (`ranges[name]`)."""
    kind, low, high = ranges[flag.removeprefix("--").replace("-", "_")]
    bounds = tr("{low} to {high}", low=show(low), high=show(high))
    group.add_argument(flag, type=ranged(kind, low, high), help=f"{help}; {bounds}" if help else bounds, **kwargs)


def device_flags(parser: argparse.ArgumentParser, device: str | None = "auto", threads: int | None = None) -> None:
    """--device and --threads, as every command that runs a model takes them."""
    parser.add_argument(
        "--device", default=device, choices=("auto", "cpu", "cuda"), help=tr("where to run (auto: CUDA if present)")
    )
    threads_flag(parser, threads)


def threads_flag(parser: argparse.ArgumentParser, default: int | None = None) -> None:
    parser.add_argument(
        "--threads",
        type=ranged(int, 1, max_threads()),
        default=default,
        help=tr("CPU threads for torch; 1 to {cores} (this machine's cores)", cores=max_threads()),
    )


def _model_flags(parser: argparse.ArgumentParser) -> None:
    from chatbot.model_config import ATTENTION_KINDS, RANGES

    g = parser.add_argument_group(tr("model settings (a new model only; a resumed one keeps its own)"))
    add_ranged(g, "--embedding-dim", RANGES)
    add_ranged(g, "--hidden-size", RANGES, tr("an even number"))
    add_ranged(g, "--layers", RANGES)
    g.add_argument("--attention", choices=ATTENTION_KINDS)
    g.add_argument("--input-feeding", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--tie-embeddings", action=argparse.BooleanOptionalAction, default=None)
    add_ranged(g, "--output-rank", RANGES, tr("output layer as two thinner matrices of this rank (0: one full matrix)"))
    add_ranged(g, "--dropout", RANGES)
    add_ranged(g, "--teacher-forcing", RANGES, tr("chance of feeding the gold token (1.0: always)"))
    add_ranged(g, "--max-source-tokens", RANGES)
    add_ranged(g, "--max-reply-tokens", RANGES)
    add_ranged(g, "--context-turns", RANGES, tr("earlier turns of a conversation read with the message (default 2)"))
    g.add_argument(
        "--copy-attention",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=tr("a gate mixes the softmax with the attention over the message's pieces: names can be copied"),
    )


def _train_flags(parser: argparse.ArgumentParser) -> None:
    from training.train_config import TRAIN_RANGES as R

    parser.add_argument("--corpus", help=tr("chitchat, sample, or a .tsv / .jsonl file (default chitchat)"))
    parser.add_argument("--out", required=True, type=Path, help=tr("model directory to write"))
    parser.add_argument("--config", type=Path, help=tr('JSON file: {{"model": {{...}}, "train": {{...}}}}'))
    add_ranged(parser, "--max-minutes", R, tr("wall-clock budget, tokenizer training included"))
    add_ranged(parser, "--epochs", R)
    device_flags(parser, device=None)  # None: the config file's, else auto
    parser.add_argument("--precision", choices=("auto", "fp32", "tf32", "bf16"))
    parser.add_argument("--resume", action="store_true", help=tr("continue from OUT/train_state.pt"))
    parser.add_argument(
        "--from",
        dest="start_from",
        type=Path,
        metavar="MODEL",
        help=tr(
            "start from this trained model's weights and tokenizer "
            "(its model settings, except --output-rank, --dropout, --teacher-forcing, --copy-attention, "
            "--context-turns and --max-source-tokens)"
        ),
    )
    parser.add_argument(
        "--nproc",
        type=ranged(int, 1, 64),
        default=1,
        help=tr("data-parallel processes on this machine (torchrun); 1 to 64"),
    )
    add_ranged(parser, "--seed", R)
    g = parser.add_argument_group(tr("training settings"))
    add_ranged(g, "--vocab-size", R)
    add_ranged(g, "--max-tokens", R, tr("padded tokens per batch"))
    add_ranged(g, "--lr", R)
    add_ranged(g, "--warmup-steps", R)
    add_ranged(g, "--weight-decay", R)
    add_ranged(g, "--label-smoothing", R)
    add_ranged(g, "--blank-source", R, tr("share of training messages emptied, for guided replies (default 0.1)"))
    add_ranged(
        g,
        "--talk-before",
        R,
        tr("share of pairs without turns before that get one or two other pairs as turns before (default 0)"),
    )
    add_ranged(g, "--dropout-from-epoch", R, tr("dropout off before this epoch (default 1; 0: from the start)"))
    add_ranged(g, "--eval-every", R)
    add_ranged(g, "--patience", R)
    add_ranged(
        g,
        "--average-from",
        R,
        tr("share of the run after which the weights' running average is validated too (default 0.8; 1: off)"),
    )
    g.add_argument("--quiet", action="store_true", help=tr("no progress bar or messages"))
    _model_flags(parser)


def _running_flags(parser: argparse.ArgumentParser, threads: int | None = None) -> None:
    """Where and how a trained model runs (evaluate, reply, chat); see `inference_precision`."""
    parser.add_argument("--model", type=Path, default=None, help=tr("model directory (default: the bundled model)"))
    device_flags(parser, threads=threads)
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16", "int8"),
        help=tr("weights for replies (auto: int8 on the CPU, measured fastest; fp32 on CUDA)"),
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help=tr("run the model's own modules (chatbot/model.py) in fp32: slow, for reading and checking"),
    )


def taught_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-taught",
        action="store_true",
        help=tr("ignore what corrections and good ratings taught (the model alone; retraining makes it learn them)"),
    )


def chat_flags(parser: argparse.ArgumentParser) -> None:
    """What `chatbot chat` takes, and `chatbot serve` passes on to each tab's chat."""
    _running_flags(parser, threads=min(2, max_threads()))
    parser.add_argument(
        "--db", type=Path, help=tr("chat log (default: $CHATBOT_DB, else chat.db in the user-data directory)")
    )
    parser.add_argument("--no-log", action="store_true", help=tr("write nothing to disk"))
    taught_flag(parser)
    decoding_flags(parser)


def _settings(args: argparse.Namespace, cls, section: dict) -> dict:
    """Config-file values, overridden by the flags given on the command line."""
    if not isinstance(section, dict):
        raise ChatbotError(tr("a config file's sections must be JSON objects, not {kind}", kind=type(section).__name__))
    values = dict(section)
    for f in fields(cls):
        flag = getattr(args, f.name, None)
        if flag is not None:
            values[f.name] = flag
    return values


def cmd_train(args: argparse.Namespace) -> int:
    from chatbot.model import ModelConfig
    from chatbot.modeldir import output_directory
    from training.train import TrainConfig, train

    config = {}
    if args.config:
        try:
            config = json.loads(args.config.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as err:  # ValueError: bad JSON, UTF-8 or a huge integer
            raise ChatbotError(
                tr(
                    "{config}: cannot read config ({reason})",
                    config=args.config,
                    reason=str(err)[:200] or type(err).__name__,
                )
            ) from None
        if not isinstance(config, dict) or set(config) - {"model", "train"}:
            raise ChatbotError(
                tr("{config}: expected a JSON object with only the sections 'model' and 'train'", config=args.config)
            )
    try:
        model_cfg = ModelConfig.from_dict(_settings(args, ModelConfig, config.get("model", {})))
        train_cfg = TrainConfig.from_dict(_settings(args, TrainConfig, config.get("train", {})))
    except TypeError as err:
        raise ChatbotError(tr("bad settings: {reason}", reason=err)) from None
    if args.nproc > 1:
        from chatbot.device import resolve_device

        cuda = resolve_device(args.device or train_cfg.device).type == "cuda"
        if not cuda and args.nproc > max_threads():
            raise ChatbotError(
                tr(
                    "--nproc {nproc}: this machine has {cores} cores; at most that many processes without CUDA",
                    nproc=args.nproc,
                    cores=max_threads(),
                )
            )
        with output_directory(args.out):
            return launch_distributed(args.nproc, args.argv)
    base = starting_model(args) if args.start_from else None
    with holding(args.out):
        result = train(args.out, model_cfg, train_cfg, resume=args.resume, quiet=args.quiet, base=base)
    if os.environ.get("RANK", "0") == "0":  # one result line, not one per data-parallel process
        print(json.dumps({"out": str(args.out), **result}))
    return 0


def holding(out: Path):
    """The lock on a training run's output directory (`output_directory`), taken by the process
    the user started: under `--nproc` the launcher holds it for its workers."""
    import contextlib

    from chatbot.modeldir import output_directory

    if os.environ.get(HELD_BY_LAUNCHER) or os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    return output_directory(out)


def starting_model(args: argparse.Namespace):
    """The model named by --from, in the shape this run trains: its own settings, with the few a
    continued training may change (the output layer's rank, dropout, teacher forcing, a copy gate,
    how much of the conversation it reads)."""
    from chatbot.model import ModelConfig
    from chatbot.modeldir import load_model

    trained, tokenizer, _ = load_model(args.start_from, precision="fp32")
    changeable = {"output_rank", "dropout", "teacher_forcing", "copy_attention", "context_turns", "max_source_tokens"}
    fixed = [
        f.name for f in fields(ModelConfig) if f.name not in changeable and getattr(args, f.name, None) is not None
    ]
    if fixed:
        raise ChatbotError(tr("--from keeps the model's own {names}: drop those flags", names=", ".join(fixed)))
    changes = {name: getattr(args, name) for name in changeable if getattr(args, name, None) is not None}
    return trained.with_settings(**changes), tokenizer


def launch_distributed(nproc: int, argv: list[str]) -> int:
    """Run this same training command as `nproc` data-parallel processes under torchrun."""
    import subprocess

    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "chatbot",
        *rest,
    ]
    return subprocess.run(command, env={**os.environ, HELD_BY_LAUNCHER: "1"}).returncode


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from chatbot.decoding import guidance_of, rerank_of
    from chatbot.device import reply_precision, resolve_device, set_threads
    from chatbot.engine import load_engine
    from chatbot.settings import settings_from
    from corpora import load_pairs
    from training.evaluate import CANDIDATES, evaluate_pairs, generate, generation_measures, hits_at_1, perplexity_note

    if args.corpus is not None and args.pairs is not None or args.corpus is args.pairs is args.probes is None:
        raise ChatbotError(tr("give either --corpus NAME --split SPLIT or --pairs FILE.tsv, or --probes FILE"))
    set_threads(args.threads)
    device = resolve_device(args.device)
    probed = probe_figures(args, device) if args.probes is not None else None
    if args.corpus is args.pairs is None:
        print(json.dumps(probed) if args.json else probe_report(probed))
        return 0
    # the model's own figure: the weights as trained, unless a reply precision is asked for
    precision = reply_precision("fp32" if args.precision == "auto" else args.precision, device, args.reference)
    engine, tokenizer, _ = load_engine(args.model, device, precision, reference=args.reference)
    model = engine.scorer  # teacher forcing: the model itself, or its int8 copy
    pairs = load_pairs(args.corpus, args.split) if args.corpus else load_pairs(str(args.pairs))
    if not pairs:
        raise ChatbotError(tr("no pairs to evaluate"))
    asked = settings_from("beam", guidance=args.guidance, rerank=args.rerank)  # the flags, or the chat's defaults
    guidance, rerank = guidance_of(model, asked), rerank_of(model, asked)  # what replies run with

    def shown(what: str) -> str | None:  # a progress bar's label on a terminal's stderr, unless --quiet
        return None if args.quiet else what

    with torch.inference_mode():
        result = evaluate_pairs(model, tokenizer, pairs, show=shown(tr("perplexity")))
        alone = (
            evaluate_pairs(model, tokenizer, pairs, with_context=False, show=shown(tr("perplexity, message alone")))
            if model.cfg.context_turns
            else result
        )
        enough = len({p.reply for p in pairs}) >= CANDIDATES
        hits = hits_at_1(model, tokenizer, pairs, guidance, rerank, show=shown("hits@1")) if enough else {}
    out = {
        **{k: result[k] for k in ("word_ppl", "token_ppl", "pairs", "words", "tokens")},
        "word_ppl_no_context": alone["word_ppl"],
        "byte_share": result["byte_share"],
        "note": perplexity_note(result),
        "precision": precision,
        "guidance": guidance,
        "rerank": rerank,
        "hits_at_1": hits.get("chat"),
        "hits_at_1_by_score": {k: v for k, v in hits.items() if k != "chat"},
    }
    if args.generate is not None:
        replier, _, _ = load_engine(
            args.model, device, reply_precision(args.precision, device, args.reference), reference=args.reference
        )
        out["generate"] = {}
        for name in args.generate or ["greedy", "beam", "sample"]:
            seed = 1 if name == "sample" else None
            settings = settings_from(name, guidance=guidance, rerank=rerank, seed=seed, candidates=args.candidates)
            replies = generate(replier, tokenizer, pairs, settings, with_context=False, show=shown(name))
            measures = generation_measures(replies, pairs)
            if model.cfg.context_turns:
                label = shown(tr("{name} with context", name=name))
                replies = generate(replier, tokenizer, pairs, settings, with_context=True, show=label)
                measures["with_context"] = generation_measures(replies, pairs)
            else:  # a model that reads the message alone: the same replies
                measures["with_context"] = dict(measures)
            out["generate"][name] = {"settings": settings.to_dict(), **measures}
    out.update(probed or {})
    if args.json:
        print(json.dumps(out))
    else:
        print(evaluation_report(out) + ("\n" + probe_report(probed) if probed else ""))
    return 0


def probe_figures(args: argparse.Namespace, device) -> dict:
    """The behavioural probes of `--probes` (`training.probes`), each answered by the model that
    answers its language in the chat, with the strategy asked for (default: the chat's)."""
    from functools import partial

    from chatbot.device import reply_precision
    from chatbot.engine import load_engine
    from chatbot.languages import bundled_companions, own_language
    from chatbot.settings import DEFAULT_STRATEGY, settings_from
    from training.evaluate import chitchat_common_words
    from training.probes import answer_alone, read_probes, run_probes

    probes = read_probes(args.probes)
    strategy = args.strategy or DEFAULT_STRATEGY
    settings = settings_from(
        strategy, guidance=args.guidance, rerank=args.rerank, candidates=args.candidates, seed=1
    )  # seeded: the same replies on every run, and from `chatbot reply --seed 1`
    precision = reply_precision(args.precision, device, args.reference)
    engine, tokenizer, _ = load_engine(args.model, device, precision, reference=args.reference)
    repliers = {own_language(args.model): (engine, tokenizer)}
    for lang, path in bundled_companions(args.model).items():
        repliers[lang] = load_engine(path, device, precision, reference=args.reference)[:2]
    answer = partial(answer_alone, repliers, settings)
    return {"probes_strategy": settings.to_dict(), **run_probes(probes, answer, chitchat_common_words())}


def probe_report(probed: dict) -> str:
    """The probes' pass rates by kind and overall, then every failure, for people."""
    rates = ", ".join(f"{kind} {rate:.2f}" for kind, rate in probed["probes"].items())
    lines = [
        tr(
            "probes ({strategy}): {all:.2f} of {count} pass ({rates})",
            strategy=probed["probes_strategy"]["strategy"],
            all=probed["probes_all"],
            count=probed["probes_count"],
            rates=rates,
        )
    ]
    for failure in probed["probe_failures"]:
        said = " / ".join(failure["turns"])
        lines.append(f"  {failure['kind']} ({', '.join(failure['failed'])}): {said} -> {failure['reply']}")
    return "\n".join(lines)


def generation_row(m: dict) -> str:
    """One strategy's generation measures (`training.evaluate.generation_measures`) as a line."""
    return tr(
        "F1 {f1:.3f}, distinct-1/2 {distinct_1:.3f}/{distinct_2:.3f}, {mean_words:.1f} words, "
        "generic {generic_rate:.1%}",
        **m,
    ) + (tr(", repeating {repetition_rate:.1%}", **m) if "repetition_rate" in m else "")


def evaluation_report(out: dict) -> str:
    """`chatbot evaluate`'s figures as lines for people."""
    lines = [
        tr(
            "word-level perplexity {word_ppl:.2f}, without context {word_ppl_no_context:.2f} (token-level "
            "{token_ppl:.2f}; {pairs} pairs, {words} words, {tokens} tokens; {precision} weights)",
            **out,
        )
    ]
    if out["note"]:
        lines.append(out["note"])
    if out["hits_at_1"] is not None:
        by = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in out["hits_at_1_by_score"].items())
        ran = f"guidance {out['guidance']:g}, rerank {out['rerank']:g}"
        lines.append(
            tr("hits@1 of 20 {hits:.3f} ({ran}; by score: {by}; chance 0.05)", hits=out["hits_at_1"], ran=ran, by=by)
        )
    for name, m in out.get("generate", {}).items():
        lines.append(f"{name}: {generation_row(m)}")
        if m["with_context"] != {k: v for k, v in m.items() if k not in ("settings", "with_context")}:
            lines.append(tr("{name} with context", name=name) + f": {generation_row(m['with_context'])}")
    return "\n".join(lines)


def decoding_flags(parser: argparse.ArgumentParser) -> None:
    """The decoding knobs, shared by `reply` and `chat`; their ranges are `chatbot.settings.RANGES`."""
    from chatbot.settings import DEFAULT_CANDIDATES
    from chatbot.settings import RANGES as R

    g = parser.add_argument_group(tr("decoding"))
    g.add_argument(
        "--strategy", choices=("greedy", "beam", "sample"), help=tr("default: sample (the chat's and reply's own)")
    )
    add_ranged(g, "--max-length", R, tr("most reply tokens (default 40)"))
    add_ranged(g, "--min-length", R, tr("fewest reply tokens before it may end (default 1)"))
    add_ranged(g, "--repetition-penalty", R, tr(">1 discourages repeating tokens (default 1.0)"))
    add_ranged(g, "--no-repeat-ngram", R, tr("never repeat an n-gram of this size (default 3; 0: off)"))
    g.add_argument(
        "--block-source-ngrams", action="store_true", default=None, help=tr("... nor copy one from the message")
    )
    g.add_argument(
        "--whole-words",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=tr("a word of the conversation begun by copying is written whole (default: on)"),
    )
    add_ranged(g, "--beam-size", R, tr("beam: hypotheses kept (default 5)"))
    add_ranged(g, "--length-penalty", R, tr("beam: GNMT alpha (default 0.6)"))
    add_ranged(g, "--n-best", R, tr("beam: replies returned per message (default 1)"))
    add_ranged(g, "--rerank", R, tr("beam: rank the candidates by what the message adds, 0 to 1 (default 1: wholly)"))
    add_ranged(
        g, "--temperature", R, tr("sample: temperature (default 0.8; 0: the most likely token, else at least 0.01)")
    )
    add_ranged(g, "--top-k", R, tr("sample: k most likely tokens (default 0: all)"))
    add_ranged(g, "--top-p", R, tr("sample: nucleus mass (default 0.9; more than 0)"))
    add_ranged(g, "--seed", R, tr("sample: seed for reproducible replies"))
    add_ranged(
        g,
        "--candidates",
        R,
        tr(
            "sample: replies drawn; the one the model's other replies agree with most answers (default {default}; "
            "1: the one drawn)",
            default=DEFAULT_CANDIDATES,
        ),
    )
    add_ranged(g, "--guidance", R, tr("weight of what the message adds over no message, for every strategy (0: off)"))


def decoding_settings(args: argparse.Namespace):
    """The settings of the strategy asked for (default: the chat's and `reply`'s shared default),
    from the decoding flags given (the rest default)."""
    from chatbot.settings import DEFAULT_STRATEGY, RANGES, settings_from

    args.strategy = args.strategy or DEFAULT_STRATEGY
    return settings_from(args.strategy, **{name: getattr(args, name, None) for name in RANGES})


def read_line(number: int, raw: bytes | None, conversations: bool) -> tuple[str, list[str]] | None:
    """One line of standard input as (message, the turns before it): a plain line is a message;
    with `--conversations`, a line is a JSON list of turns, and the reply is to its last turn. A
    line that is empty, too long, not UTF-8 or (with --conversations) not a list of strings is
    None, reported on standard error."""
    from chatbot.settings import MAX_MESSAGE_CHARS

    if raw is None:
        line, why = None, f"is longer than {MAX_MESSAGE_CHARS:,} characters"
    else:
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as err:
            line, why = None, tr("is not valid UTF-8 (byte {start})", start=err.start)
        else:
            line, why = parse_line(line, conversations, MAX_MESSAGE_CHARS)
    if why:
        print(tr("chatbot: line {number} {why}: no reply", number=number, why=why), file=sys.stderr, flush=True)
    return line


def parse_line(line: str, conversation: bool, limit: int) -> tuple[tuple[str, list[str]] | None, str | None]:
    """One line of `chatbot reply`'s input: ((message, turns before it), None), or (None, why not)."""
    if len(line) > limit:
        return None, f"is longer than {limit:,} characters"
    turns = [line]
    if conversation:
        try:
            turns = json.loads(line)
        except (ValueError, RecursionError):  # ValueError: also an integer too long to read
            return None, "is not JSON (a conversation is a JSON list of turns)"
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            return None, "is not a JSON list of turns (strings)"
        turns = [clean_text(t) for t in turns]  # JSON may spell a lone surrogate ("\ud800")
    if not turns[-1].strip():
        return None, "is empty" if not conversation else "ends with an empty turn"
    return (turns[-1], [t for t in turns[:-1] if t.strip()]), None


def cmd_reply(args: argparse.Namespace) -> int:
    """A filter: each line answered as soon as it is read, in order, flushed line by line."""
    from chatbot.device import reply_precision, resolve_device, set_threads
    from chatbot.engine import load_engine
    from chatbot.languages import bundled_companions, own_language
    from chatbot.lines import LineReader
    from chatbot.settings import MAX_MESSAGE_CHARS

    settings = decoding_settings(args)
    if args.text is not None:
        if not args.text.strip():
            raise ChatbotError(tr("empty message: give some text to reply to"))
        if len(args.text) > MAX_MESSAGE_CHARS:
            raise ChatbotError(tr("the message is longer than {limit:,} characters", limit=MAX_MESSAGE_CHARS))
    set_threads(args.threads)
    device = resolve_device(args.device)
    precision = reply_precision(args.precision, device, args.reference)
    model, tokenizer, config = load_engine(args.model, device, precision, reference=args.reference)
    main = own_language(args.model)
    repliers = {main: (model, tokenizer, None)}  # the bundled models of other languages answer their messages
    configs = {main: config}
    for lang, path in bundled_companions(args.model).items():
        engine, vocabulary, configs[lang] = load_engine(path, device, precision, reference=args.reference)
        repliers[lang] = (engine, vocabulary, None)
    if args.db is not None and not args.no_taught:
        repliers = with_taught(args.db, repliers, configs)
    if args.text is not None:
        answer(args, repliers, settings, [(1, (clean_text(args.text), []))])
        return 0
    # sampling answers each line alone: consensus is fastest so, and a seeded draw is then the
    # same whatever lines arrive with it; greedy and beam decode the lines waiting together
    most = 1 if args.strategy == "sample" else args.batch_size
    reader = LineReader(sys.stdin.buffer, 4 * MAX_MESSAGE_CHARS + 2)  # UTF-8: 4 bytes a character at most
    while lines := reader.waiting(most):
        answer(args, repliers, settings, [(n.number, read_line(n.number, n.raw, args.conversations)) for n in lines])
    return 0


def with_taught(db: Path, repliers: dict, configs: dict) -> dict:
    """Each replier with what the log at `db` taught the messages it answers (`chatbot.taught`),
    behind its model's gates (`configs`, by language)."""
    from chatbot.languages import answered_by
    from chatbot.storage import Storage
    from chatbot.taught import memory_from_log

    if not db.exists():
        raise ChatbotError(tr("{path}: no such chat log", path=db))
    storage = Storage(db)
    try:
        rows = storage.taught()
    finally:
        storage.close()
    by = [answered_by(repliers, r["message"]) for r in rows]
    return {
        lang: (
            engine,
            tokenizer,
            memory_from_log(engine, tokenizer, [r for r, replier in zip(rows, by) if replier == lang], configs[lang]),
        )
        for lang, (engine, tokenizer, _) in repliers.items()
    }


def answer(args: argparse.Namespace, repliers: dict, settings, items: list) -> None:
    """Reply to `items`, (line number, (message, turns before) or None), and print the replies
    in order, flushed: a line that cannot be answered gets an empty reply and a note."""
    from chatbot.languages import answered_by, language_of

    replies: dict[int, list] = {}
    by_language: dict[str, list[int]] = {}
    if len(repliers) > 1:  # each language's model reads only the turns in its language, as in the chat
        items = [(n, m and (m[0], [t for t in m[1] if language_of(t) == language_of(m[0])])) for n, m in items]
    for i, (_, message) in enumerate(items):
        if message is not None:
            by_language.setdefault(answered_by(repliers, message[0]), []).append(i)
    for lang, wanted in by_language.items():
        engine, vocabulary, taught = repliers[lang]
        replies.update(decode_lines(engine, vocabulary, settings, items, wanted, taught))
    for i, (_, message) in enumerate(items):
        print_reply(args, message, replies.get(i, []), settings)
    sys.stdout.flush()


def decode_lines(engine, vocabulary, settings, items: list, wanted: list[int], taught=None) -> dict[int, list]:
    """Replies to the messages of `items` at `wanted`, together; if that fails, each alone, so
    one message the model cannot take costs its own reply only."""
    from chatbot.decoding import reply

    texts, contexts = [items[i][1][0] for i in wanted], [items[i][1][1] for i in wanted]
    try:
        answered = dict(zip(wanted, reply(engine, vocabulary, texts, settings, contexts=contexts, taught=taught)))
    except (ChatbotError, RuntimeError, ValueError) as err:
        if len(wanted) == 1:
            why = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
            print(tr("chatbot: line {number} {why}: no reply", number=items[wanted[0]][0], why=why), file=sys.stderr)
            return {}
        answered = {}
        for i in wanted:
            answered.update(decode_lines(engine, vocabulary, settings, items, [i], taught))
        return answered
    for i, n_best in answered.items():
        if n_best and n_best[0].truncated:
            print(
                tr(
                    "chatbot: message {number} is longer than {limit} tokens: the model read its end",
                    number=items[i][0],
                    limit=engine.cfg.max_source_tokens,
                ),
                file=sys.stderr,
            )
    return answered


def print_reply(args: argparse.Namespace, message, n_best: list, settings) -> None:
    """One line of output: the reply (n-best joined by |||), or with --json its record."""
    if args.json:
        record = {
            "message": message[0] if message else None,
            "context": message[1] if message else [],
            "reply": n_best[0].text if n_best else "",
            "score": n_best[0].score if n_best else None,
            "token_logprobs": n_best[0].token_logprobs if n_best else [],
            "n_best": [{"reply": r.text, "score": r.score} for r in n_best],
            "agreement": n_best[0].agreement if n_best else None,  # consensus sampling: with the model's replies
            "decoding": n_best[0].settings if n_best else settings.to_dict(),
            "model": str(args.model),
            "latency_ms": round(n_best[0].seconds * 1000, 2) if n_best else None,
        }
        print(json.dumps(record, ensure_ascii=False))
    else:  # a model may write control bytes (a byte piece <0x1B>): shown, never obeyed by a terminal
        print(" ||| ".join(printable(r.text, newlines=False) for r in n_best) if n_best else "")


def cmd_chat(args: argparse.Namespace) -> int:
    """Open the log and the screen first; torch and the model load while the user types."""
    from chatbot.modeldir import check_model_files
    from chatbot.session import open_session

    settings = decoding_settings(args)
    check_model_files(args.model)
    served = "TEXTUAL_DRIVER" in os.environ  # `chatbot serve` runs each tab's chat over pipes, drawn by its driver
    if not served and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ChatbotError(tr("chat needs a terminal; use `chatbot reply` to answer lines of text"))
    if args.reference:
        reference_precision(args.precision)  # refused here, before the screen, rather than once torch loads
    session = open_session(args.model, args.db, args.no_log, args.device, args.strategy, settings, load=False)
    from chatbot.app.chat_app import ChatApp

    session.reference, session.taught = args.reference, not args.no_taught
    app = ChatApp(session, load=(args.device, args.precision, args.threads))
    try:
        app.run()
    finally:
        if app.loader is not None:  # quit while torch loads: let it finish, or its runtime aborts the exit
            app.loader.join(timeout=60)
        if session.storage is not None:
            session.storage.close()
    if session.load_error is not None:
        raise ChatbotError(session.load_error)
    if app.fatal is not None:
        raise ChatbotError(app.fatal)
    return app.return_code or 0


def cmd_explain(args: argparse.Namespace) -> int:
    """A walk-through of one reply, a page per step: the decode that replies, watched."""
    from chatbot.device import reply_precision, resolve_device, set_threads
    from chatbot.engine import load_engine
    from chatbot.explain import walk_through

    message = clean_text(args.message)
    if not message.strip():
        raise ChatbotError(tr("empty message: give some text to explain a reply to"))
    settings = decoding_settings(args)
    forced = {}
    for item in args.force or []:
        step, _, name = clean_text(item).partition("=")
        if not (step.isascii() and step.isdigit()) or not name or not 1 <= int(step) <= settings.max_length:
            raise ChatbotError(
                tr(
                    "--force takes STEP=PIECE (a step from 1 to {most}, the reply's longest, and a piece such as "
                    "▁yes or _yes), not {item!r}",
                    most=settings.max_length,
                    item=clean_text(item)[:40],
                )
            )
        forced[int(step) - 1] = name
    set_threads(args.threads)
    device = resolve_device(args.device)
    precision = reply_precision(args.precision, device, args.reference)
    engine, tokenizer, _ = load_engine(args.model, device, precision, reference=args.reference)
    for step, name in forced.items():
        if tokenizer.sp.piece_to_id(name) == 1 and tokenizer.sp.piece_to_id(name.replace("_", "▁")) != 1:
            forced[step] = name = name.replace("_", "▁")  # "_" is how "▁" is typed
        if tokenizer.sp.piece_to_id(name) == 1:  # unknown
            raise ChatbotError(tr("--force: {name!r} is not a piece of this model's vocabulary", name=name))
    reply_text = clean_text(args.reply) if args.reply is not None else None
    walk = walk_through(engine, tokenizer, message, settings, reply_text=reply_text, forced=forced)
    walk["settings"]["precision"] = precision
    if args.plot:
        from chatbot.explain_plot import plot_walk_through

        plot_walk_through(walk, args.plot)
    if args.json:
        print(json.dumps(walk, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.rule import Rule

    from chatbot.explain_pages import pages

    console = Console(highlight=False)
    shown = pages(walk)
    for number, page in enumerate(shown, start=1):
        console.print(Rule(f"{number}/{len(shown)}"))
        console.print(page)
    console.print(Rule())
    console.print(tr("reply: {reply}", reply=walk["reply"]))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The chat in a browser: each tab runs `chatbot chat` with the flags given here."""
    from chatbot.modeldir import check_model_files
    from chatbot.serve import serve

    check_model_files(args.model)  # a bad model is one line here, not a broken page in every tab
    decoding_settings(args)  # and so are bad decoding flags
    if not args.no_log:  # and a log the tabs' chats would refuse
        from chatbot.storage import Storage, default_db_path

        Storage(args.db or default_db_path()).close()
    serve(args.host, args.port, args.public, chat_arguments(args.argv))
    return 0


def chat_arguments(argv: list[str]) -> list[str]:
    """`chatbot serve`'s command line less its own flags: what each tab's `chatbot chat` gets."""
    own_with_value, own = {"--host", "--port"}, {"--public", "serve"}
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in own_with_value:
            skip = True
        elif arg not in own and arg.split("=", 1)[0] not in own_with_value:
            out.append(arg)
    return out


def cmd_retrain(args: argparse.Namespace) -> int:
    from training.retrain import retrain

    if args.out is None and args.export is None:
        raise ChatbotError(tr("give --out DIR for the new model (or --export FILE.tsv to only write the pairs)"))
    return retrain(args)


def _evaluate_flags(parser: argparse.ArgumentParser) -> None:
    from chatbot.settings import RANGES as DECODING_RANGES

    _running_flags(parser)
    parser.add_argument("--corpus", help=tr("chitchat, sample, or a .tsv / .jsonl file"))
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
    parser.add_argument("--pairs", type=Path, help=tr("a TSV file of source<TAB>reply lines"))
    parser.add_argument("--json", action="store_true", help=tr("one JSON object: word_ppl, hits_at_1, generate, ..."))
    parser.add_argument(
        "--generate",
        nargs="*",
        choices=("greedy", "beam", "sample"),
        metavar="STRATEGY",
        help=tr("also reply to every message with these strategies (default all three): F1, distinct-n, generic rate"),
    )
    add_ranged(parser, "--guidance", DECODING_RANGES, tr("guidance weight (default: the chat's)"))
    add_ranged(parser, "--rerank", DECODING_RANGES, tr("beam's ranking by what the message adds (default: the chat's)"))
    add_ranged(parser, "--candidates", DECODING_RANGES, tr("sampling's candidates (default: the chat's; 1: one draw)"))
    parser.add_argument(
        "--probes",
        type=Path,
        metavar="FILE",
        help=tr("behavioural probes (JSONL) to answer and test: pass rates by kind, and the failures"),
    )
    parser.add_argument(
        "--strategy", choices=("greedy", "beam", "sample"), help=tr("the probes' strategy (default: the chat's)")
    )
    parser.add_argument(
        "--quiet", action="store_true", help=tr("no progress bars (shown on a terminal's standard error)")
    )


def _reply_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", metavar="TEXT")
    _running_flags(parser)
    parser.add_argument("--db", type=Path, help=tr("a chat log: follow what its corrections and good ratings taught"))
    taught_flag(parser)
    parser.add_argument(
        "--batch-size",
        type=ranged(int, 1, MAX_BATCH),
        default=32,
        help=tr("standard-input lines decoded together; 1 to {limit}", limit=MAX_BATCH),
    )
    parser.add_argument(
        "--json", action="store_true", help=tr("one JSON object a line: reply, scores, settings, timing")
    )
    parser.add_argument(
        "--conversations",
        action="store_true",
        help=tr("each input line is a conversation (a JSON list of turns): reply to its last turn, reading the rest"),
    )
    decoding_flags(parser)


def _explain_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("message", metavar="MESSAGE")
    _running_flags(parser)
    parser.add_argument(
        "--reply", help=tr("also feed the model this reply (teacher forcing): its loss at each position")
    )
    parser.add_argument(
        "--force", action="append", metavar="STEP=PIECE", help=tr("what if the model wrote PIECE at STEP?")
    )
    parser.add_argument("--json", action="store_true", help=tr("every number of the walk-through as one JSON object"))
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png", help=tr("draw the attention and each step's probability")
    )
    decoding_flags(parser)


def _serve_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help=tr("address to listen on (default 127.0.0.1: this machine only)")
    )
    parser.add_argument("--port", type=ranged(int, 1, 65535), default=8000, help=tr("port to listen on (default 8000)"))
    parser.add_argument(
        "--public", action="store_true", help=tr("allow an address other machines reach (no authentication!)")
    )
    chat_flags(parser)


def _retrain_flags(parser: argparse.ArgumentParser) -> None:
    from chatbot.model_config import RANGES as MODEL_RANGES
    from training.train_config import TRAIN_RANGES as R

    parser.add_argument("--db", type=Path, required=True, help=tr("the chat log"))
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help=tr("the model to start from (default: the bundled model); never written"),
    )
    parser.add_argument("--out", type=Path, help=tr("directory for the new model"))
    parser.add_argument(
        "--replay",
        help=tr(
            "corpus mixed in so the model does not forget (chitchat, sample, a file; '' for none; "
            "default: chitchat, for the Korean model its own corpus where it is at hand, else listening-ko)"
        ),
    )
    parser.add_argument(
        "--replay-ratio", type=ranged(float, 0, 100), default=10.0, help=tr("replayed pairs per logged pair; 0 to 100")
    )
    parser.add_argument(
        "--neighbours",
        type=ranged(int, 0, 1000),
        default=0,
        help=tr(
            "replayed pairs the model reads most like each correction, trained beside it so that it stays "
            "with its message (0: none); 0 to 1000"
        ),
    )
    parser.add_argument(
        "--spread-pool",
        type=ranged(int, 0, 100_000),
        default=1000,
        help=tr(
            "validation messages of the model's own corpus (else the replayed one) read for taught replies said "
            "where they were not taught for, which are then trained against there (0: no check); 0 to 100000"
        ),
    )
    parser.add_argument(
        "--every-correction",
        action="store_true",
        help=tr(
            "train the corrections the model would not have begun so alone too (by default they stay in the "
            "taught memory: learned alone, they are said to messages the model reads alike)"
        ),
    )
    parser.add_argument(
        "--no-human-turns", action="store_true", help=tr("do not learn the human's own turns as replies")
    )
    parser.add_argument(
        "--no-anchor",
        action="store_true",
        help=tr("learn the replayed pairs' own replies instead of the parent model's distribution on them"),
    )
    parser.add_argument("--export", type=Path, help=tr("only write the logged pairs to this TSV file"))
    add_ranged(parser, "--max-minutes", R, tr("training's wall-clock budget"), default=12.0)
    add_ranged(
        parser,
        "--epochs",
        R,
        tr("most passes over the logged pairs (fresh replayed pairs in each); it stops once all taught is recalled"),
        default=150,
    )
    add_ranged(parser, "--lr", R, tr("peak learning rate"), default=3e-4)
    add_ranged(
        parser, "--max-tokens", R, tr("padded tokens per batch: small batches, more steps on a small log"), default=1500
    )
    parser.add_argument(
        "--unlikelihood",
        type=ranged(float, 0, 100),
        default=0.1,
        help=tr("weight of the unlikelihood of replies rated bad (0: ignore bad ratings); 0 to 100"),
    )
    parser.add_argument(
        "--taught-weight",
        type=ranged(int, 1, 100),
        default=1,
        help=tr("times each correction and good reply is trained per epoch, against one of each human turn; 1 to 100"),
    )
    add_ranged(parser, "--dropout", MODEL_RANGES, tr("dropout while fine-tuning (default: the model's own)"))
    add_ranged(parser, "--eval-every", R, default=50)
    add_ranged(parser, "--patience", R, default=4)
    add_ranged(parser, "--seed", R, default=1)
    device_flags(parser)
    parser.add_argument(
        "--force", action="store_true", help=tr("register the new model even if it learned nothing it was taught")
    )
    parser.add_argument(
        "--no-benchmark", dest="skip_chitchat", action="store_true", help=tr("skip the chitchat test perplexity")
    )
    parser.add_argument("--quiet", action="store_true")


def commands() -> list[tuple]:
    """Each command: its name, its help (in the interface's language, chosen by the time this is
    called), the function that adds its flags, and the one that runs it."""
    return [
        ("train", tr("train a tokenizer and a model on a corpus"), _train_flags, cmd_train),
        ("evaluate", tr("word-level perplexity of a model on pairs"), _evaluate_flags, cmd_evaluate),
        ("reply", tr("reply to TEXT, or to each line of standard input"), _reply_flags, cmd_reply),
        (
            "explain",
            tr("walk through one reply step by step: pieces, encoder, attention, softmax"),
            _explain_flags,
            cmd_explain,
        ),
        ("serve", tr("the chat in a browser (each tab its own chat, one log)"), _serve_flags, cmd_serve),
        ("chat", tr("the terminal chat client"), chat_flags, cmd_chat),
        (
            "retrain",
            tr("fine-tune a model on the chat log: corrections, good replies, your own turns"),
            _retrain_flags,
            cmd_retrain,
        ),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="chatbot", description=tr("A seq2seq chatbot with attention that you train yourself."))
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text, add_flags, run in commands():
        command = sub.add_parser(name, help=help_text)
        add_flags(command)
        command.set_defaults(run=run)
        command.add_argument(
            "--lang",
            choices=("en", "ko"),
            help=tr("the interface's language (default: the locale's, LANG=ko_KR.UTF-8: ko)"),
        )
    return parser


def language_asked(argv: list[str]) -> str | None:
    """The value of `--lang` in `argv` (`--lang ko` or `--lang=ko`), if any."""
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--lang="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> int:
    from corpora import CorpusError

    argv = sys.argv[1:] if argv is None else argv
    set_language(language_asked(argv))  # before parsing: its errors speak the language asked for
    args = build_parser().parse_args(argv)
    args.argv = argv
    set_language(args.lang)
    try:
        if getattr(args, "model", "unset") is None:
            from chatbot.paths import default_model_dir

            args.model = default_model_dir()
        return args.run(args)
    except (ChatbotError, CorpusError) as err:
        print(f"chatbot: {t('cli.error')}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"chatbot: {tr('interrupted')}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`chatbot reply ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1


if __name__ == "__main__":
    sys.exit(main())
