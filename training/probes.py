"""Behavioural probes: does a reply do what a person checks? (CheckList, Ribeiro et al. 2020.)

A probe is one JSON line: the turns of a conversation (the last one is answered, the others are
its context, turns alternating between the person and the bot), a kind, and a test of the reply,
`must_match` and/or `must_not_match`, case-insensitive regular expressions. Every reply is also
checked for repetition (`repeats`): that check is the kind "repetition", and a probe passes only
when its reply passes both. docs/evaluation.md describes the kinds and the shipped suite.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chatbot.consensus import normalise
from chatbot.errors import ChatbotError
from chatbot.i18n import tr

REPETITION = "repetition"
MAX_PROBES = 100_000


@dataclass(frozen=True)
class Probe:
    kind: str
    turns: tuple[str, ...]
    must_match: re.Pattern | None = None
    must_not_match: re.Pattern | None = None

    def test(self, reply: str) -> bool:
        """The probe's own test: its pattern found (must_match), its other pattern not found."""
        if self.must_match is not None and not self.must_match.search(reply):
            return False
        return self.must_not_match is None or not self.must_not_match.search(reply)


def read_probes(path: Path) -> list[Probe]:
    """The probes of a JSONL file; a line that is not a probe stops it with a one-line error."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ChatbotError(tr("{path}: cannot read the probes ({why})", path=path, why=type(err).__name__)) from None
    probes = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            probes.append(parse_probe(json.loads(line)))
        except (ValueError, RecursionError, re.error) as err:  # ValueError: bad JSON too
            why = str(err).splitlines()[0][:100] if str(err) else type(err).__name__
            raise ChatbotError(tr("{path}:{number}: not a probe ({why})", path=path, number=number, why=why)) from None
        if len(probes) > MAX_PROBES:
            raise ChatbotError(tr("{path}: more than {limit:,} probes", path=path, limit=MAX_PROBES))
    if not probes:
        raise ChatbotError(tr("{path}: no probes in it", path=path))
    return probes


def parse_probe(record) -> Probe:
    if not isinstance(record, dict):
        raise ValueError("a probe is a JSON object")
    turns, kind = record.get("turns"), record.get("kind")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise ValueError('"turns" must be a list of non-empty strings')
    if not isinstance(kind, str) or not kind.strip() or kind == REPETITION:
        raise ValueError('"kind" must be a name (not "repetition": every reply is checked for it)')
    patterns = {}
    for key in ("must_match", "must_not_match"):
        if record.get(key) is not None:
            if not isinstance(record[key], str):
                raise ValueError(f'"{key}" must be a regular expression')
            patterns[key] = re.compile(record[key], re.IGNORECASE)
    return Probe(kind.strip(), tuple(turns), **patterns)


def repeats(reply: str, common: frozenset[str]) -> bool:
    """A content word (a normalised word not in `common`) or a word pair said twice: "I have a
    dog and I also like the dog", "blue, green, blue"."""
    words = normalise(reply)
    content = [w for w in words if w not in common]
    pairs = list(zip(words, words[1:]))
    return len(set(content)) < len(content) or len(set(pairs)) < len(pairs)


def answer_alone(repliers: dict, settings, probes: Sequence[Probe]) -> list[str]:
    """Each probe's reply, answered alone as the chat answers (int8 rounds a batch's activations
    together), by `repliers[language]` (engine, tokenizer) for its last turn's language, else the
    first (the model asked for)."""
    from chatbot.decoding import reply
    from chatbot.languages import answered_by

    replies = []
    for probe in probes:
        engine, tokenizer = repliers[answered_by(repliers, probe.turns[-1])]
        replies.append(reply(engine, tokenizer, [probe.turns[-1]], settings, contexts=[probe.turns[:-1]])[0][0].text)
    return replies


def run_probes(probes: Sequence[Probe], answer: Callable[[list[Probe]], list[str]], common: frozenset[str]) -> dict:
    """Answer every probe (`answer`: probes -> their replies) and score the replies: `probes`, the
    pass rate by kind, with "repetition" over every reply; `probes_all`, the share of probes that
    pass their test and do not repeat; `probe_failures`, each failed probe with its reply."""
    replies = answer(list(probes))
    by_kind: dict[str, list[bool]] = {}
    failures, passed = [], 0
    for probe, reply in zip(probes, replies):
        own, fresh = probe.test(reply), not repeats(reply, common)
        by_kind.setdefault(probe.kind, []).append(own)
        by_kind.setdefault(REPETITION, []).append(fresh)
        passed += own and fresh
        if not (own and fresh):
            failed = [why for why, ok in (("test", own), (REPETITION, fresh)) if not ok]
            failures.append({"kind": probe.kind, "turns": list(probe.turns), "reply": reply, "failed": failed})
    return {
        "probes": {kind: sum(ok) / len(ok) for kind, ok in sorted(by_kind.items())},
        "probes_all": passed / len(probes),
        "probes_count": len(probes),
        "probe_failures": failures,
    }
