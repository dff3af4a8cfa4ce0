"""Readers for user corpora: TSV and CSV pairs, JSONL conversations, strict about bad input."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from chatbot.i18n import tr
from corpora.pairs import CorpusError, Pair, clean_turn, conversation_pairs


def _lines(path: Path):
    """Yield (line number, text) and turn I/O and encoding problems into one-line errors."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(tr("{path}: no such file", path=path)) from None
    except OSError as err:
        raise CorpusError(tr("{path}: cannot read ({strerror})", path=path, strerror=err.strerror)) from None
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CorpusError(
                tr("{path}:{number}: invalid UTF-8 at byte {start}", path=path, number=number, start=err.start)
            ) from None
        yield number, text.rstrip("\r")


def _report_skipped(path: Path, skipped: int, why: str) -> None:
    if skipped:
        print(tr("{path}: skipped {count} {why}", path=path, count=skipped, why=why), file=sys.stderr)


def read_tsv(path: Path) -> list[Pair]:
    """`source<TAB>reply` lines; blank lines are ignored, pairs with an empty side are skipped."""
    pairs, skipped = [], 0
    for number, line in _lines(Path(path)):
        if not line.strip():
            continue
        if "\t" not in line:
            raise CorpusError(
                tr("{path}:{number}: expected 'source<TAB>reply', found no tab", path=path, number=number)
            )
        source, reply = line.split("\t", 1)
        source, reply = clean_turn(source), clean_turn(reply)
        if not source or not reply:
            skipped += 1
            continue
        pairs.append(Pair(source, reply))
    _report_skipped(Path(path), skipped, tr("pairs with an empty source or reply"))
    return pairs


def read_jsonl(path: Path) -> list[Pair]:
    """One conversation a line (a JSON list of turns, each a string); consecutive turns make pairs."""
    pairs, skipped = [], 0
    for number, line in _lines(Path(path)):
        if not line.strip():
            continue
        try:
            turns = json.loads(line)
        except (ValueError, RecursionError) as err:  # ValueError: also an integer too long to read
            msg = err.msg if isinstance(err, json.JSONDecodeError) else str(err).splitlines()[0][:80]
            raise CorpusError(tr("{path}:{number}: invalid JSON ({msg})", path=path, number=number, msg=msg)) from None
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise CorpusError(
                tr("{path}:{number}: expected a JSON list of strings (the turns)", path=path, number=number)
            )
        cleaned = [clean_turn(t) for t in turns]
        kept = [t for t in cleaned if t]
        skipped += len(cleaned) - len(kept)
        pairs.extend(conversation_pairs(kept))
    _report_skipped(Path(path), skipped, tr("empty turns"))
    return pairs


CSV_COLUMNS = (("Q", "A"), ("source", "reply"))  # the Korean chatbot corpus's header, and the plain one


def read_csv(path: Path) -> list[Pair]:
    """A CSV file with a header naming its columns `Q,A` (the Korean chatbot corpus: extra columns
    such as `label` are ignored) or `source,reply`; quoted fields may hold commas and newlines.
    Rows with an empty side are skipped; a row without those columns is a file:line error."""
    text = "\n".join(line for _, line in _lines(Path(path)))  # UTF-8 checked line by line
    rows = csv.reader(io.StringIO(text))
    try:
        header = next(rows)
    except StopIteration:
        raise CorpusError(tr("{path}: empty (expected a header: Q,A or source,reply)", path=path)) from None
    except csv.Error as err:
        raise CorpusError(tr("{path}:1: not CSV ({reason})", path=path, reason=err)) from None
    names = [h.strip().lstrip("\ufeff") for h in header]
    columns = next(((names.index(s), names.index(r)) for s, r in CSV_COLUMNS if s in names and r in names), None)
    if columns is None:
        raise CorpusError(
            tr(
                "{path}:1: the header must name the columns Q,A or source,reply, not {names}",
                path=path,
                names=",".join(names)[:80],
            )
        )
    pairs, skipped, width = [], 0, max(columns) + 1
    try:
        for row in rows:
            if not row:
                continue
            if len(row) < width:
                raise CorpusError(
                    tr(
                        "{path}:{number}: expected at least {width} columns, found {found}",
                        path=path,
                        number=rows.line_num,
                        width=width,
                        found=len(row),
                    )
                )
            source, reply = clean_turn(row[columns[0]]), clean_turn(row[columns[1]])
            if not source or not reply:
                skipped += 1
                continue
            pairs.append(Pair(source, reply))
    except csv.Error as err:
        raise CorpusError(
            tr("{path}:{number}: not CSV ({reason})", path=path, number=rows.line_num, reason=err)
        ) from None
    _report_skipped(Path(path), skipped, tr("pairs with an empty source or reply"))
    return pairs
