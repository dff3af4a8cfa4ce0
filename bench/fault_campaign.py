"""A fault campaign, run as an attacker would: damaged and foreign logs, damaged model directories,
bad standard input and concurrent runs, each through the real `chatbot` commands (the chat in a
real pseudo-terminal). Every case must end as expected: a refusal is one line on stderr and a
non-zero exit with the file unchanged; an acceptance is exit 0 with nothing lost. Counts
tracebacks, hangs, wrong exits and losses; prints a Markdown table (docs/reliability.md).

    python bench/fault_campaign.py                 # everything, with the bundled model
    python bench/fault_campaign.py --only logs     # one group: logs, models, stdin, concurrency
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import pty
import random
import select
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import termios
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatbot.paths import BUNDLED_MODEL  # noqa: E402
from chatbot.storage import Storage  # noqa: E402

NEWLINE = b"\n"
HANG = 90  # seconds: a command still running then has hung
PAGE = 4096


@dataclass
class Outcome:
    group: str
    case: str
    expected: str  # "refuse", "accept" or "either"
    code: int | None  # None: hung
    stderr: str
    lost: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.stderr

    @property
    def hung(self) -> bool:
        return self.code is None

    @property
    def wrong_exit(self) -> bool:
        if self.hung:
            return False
        if self.expected == "refuse":
            lines = [line for line in self.stderr.splitlines() if line.strip()]
            return self.code == 0 or len(lines) != 1
        if self.expected == "accept":
            return self.code != 0
        return False

    @property
    def ok(self) -> bool:
        return not (self.traceback or self.hung or self.wrong_exit or self.lost)


def chatbot(*argv: str, stdin: bytes | None = None, seconds: float = HANG) -> tuple[int | None, str, bytes]:
    """(exit code or None if it hung, stderr, stdout) of `chatbot ARGV`."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "chatbot", *argv],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=seconds,
        )
    except subprocess.TimeoutExpired as err:
        return None, (err.stderr or b"").decode(errors="replace"), err.stdout or b""
    return done.returncode, done.stderr.decode(errors="replace"), done.stdout


def chat_in_terminal(argv: list[str], seconds: float = 25) -> tuple[int | None, str, bool]:
    """`chatbot chat ARGV` in a real pseudo-terminal (80x24): (exit code, what it printed,
    whether it drew its screen and ran). A chat that runs is quit with ctrl+q."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "chatbot", "chat", *argv])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    shown, started, deadline, quit_sent = b"", time.monotonic(), time.monotonic() + seconds, False
    code = None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                chunk = b""
            shown += chunk
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            code = os.waitstatus_to_exitcode(status)
            break
        if not quit_sent and b"Say something" in shown and time.monotonic() - started > 3:
            os.write(fd, b"\x11")  # ctrl+q
            quit_sent = True
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(fd)
    text = shown.decode(errors="replace")
    ran = "Say something" in text
    if ran:  # the screen's own drawing is not an error message
        text = "\n".join(line for line in text.splitlines() if "Traceback" in line or "error" in line.lower()[:40])
    return code, text, ran


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


# --- logs ---------------------------------------------------------------------------------------


def healthy_log(path: Path, conversations: int = 5) -> Path:
    store = Storage(path)
    for c in range(conversations):
        conversation = store.new_conversation(f"conversation {c}")
        for turn in range(12):
            user = store.add_message(conversation, "user", f"message {turn} of {c} " + "words " * 30)
            bot = store.add_message(conversation, "bot", f"reply {turn} " + "more " * 30, reply_to=user)
            store.rate(bot, 1)
        store.correct(bot, "a better reply")
    store.close()
    return path


def overwrite(path: Path, start: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[start : start + len(data)] = data
    path.write_bytes(bytes(raw))


def noise(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(n))


def sql(path: Path, script: str) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.close()


def log_cases(work: Path) -> list[tuple[str, str, object]]:
    """(name, expected, make(path)) for each kind of log."""
    cases: list[tuple[str, str, object]] = []
    size = healthy_log(work / "probe.db").stat().st_size
    pages = size // PAGE
    for page in sorted({1, 2, 3, pages // 3, pages // 2, 2 * pages // 3, pages - 2, pages - 1}):
        cases.append(
            (
                f"random bytes over page {page + 1} of {pages}",
                "refuse",
                lambda p, s=page: overwrite(p, s * PAGE, noise(PAGE, s)),
            )
        )
        cases.append(
            (f"zeros over page {page + 1} of {pages}", "refuse", lambda p, s=page: overwrite(p, s * PAGE, bytes(PAGE)))
        )
    for start, n in ((0, 16), (0, 100), (16, 2), (28, 4), (40, 20), (96, 4)):
        cases.append(
            (
                f"header bytes {start}..{start + n} random",
                "either",
                lambda p, a=start, b=n: overwrite(p, a, noise(b, a)),
            )
        )
    for keep in (50, 100, 1000, PAGE, PAGE + 1, size // 2, size - 1):
        whole = "accept" if keep == size - 1 else "refuse"  # a last page short of its last byte: SQLite reads it whole
        cases.append((f"truncated to {keep} bytes", whole, lambda p, k=keep: p.write_bytes(p.read_bytes()[:k])))
    cases += [
        ("not SQLite: text", "refuse", lambda p: p.write_text("hello, I am not a database\n" * 100)),
        ("not SQLite: random bytes", "refuse", lambda p: p.write_bytes(noise(3 * PAGE, 7))),
        ("another application's tables", "refuse", lambda p: (p.unlink(), sql(p, "create table invoices (id, total)"))),
        (
            "another application's tables and data",
            "refuse",
            lambda p: (p.unlink(), sql(p, "create table t (x); insert into t values (1), (2)")),
        ),
        (
            "another application with a messages table",
            "refuse",
            lambda p: (p.unlink(), sql(p, "create table messages (id, text); create table feedback (x)")),
        ),
        (
            "an index and a view only",
            "refuse",
            lambda p: (p.unlink(), sql(p, "create table a (x); create index i on a (x); create view v as select 1")),
        ),
        ("a newer schema", "refuse", lambda p: sql(p, "insert into _migrations values ('m999_future', 'later')")),
        (
            "a migration name that is garbage",
            "refuse",
            lambda p: sql(p, "insert into _migrations values (x'00ff', 'now')"),
        ),
        ("search trigger ai dropped", "accept", lambda p: sql(p, "drop trigger messages_ai")),
        ("search trigger ad dropped", "accept", lambda p: sql(p, "drop trigger messages_ad")),
        ("search trigger au dropped", "accept", lambda p: sql(p, "drop trigger messages_au")),
        (
            "all search triggers dropped",
            "accept",
            lambda p: sql(p, "drop trigger messages_ai; drop trigger messages_ad; drop trigger messages_au"),
        ),
        ("search index dropped", "refuse", lambda p: sql(p, "drop table messages_fts")),
        ("messages table dropped", "refuse", lambda p: sql(p, "drop table messages_fts; drop table messages")),
        ("feedback table dropped", "refuse", lambda p: sql(p, "drop table feedback")),
        ("models table dropped", "refuse", lambda p: sql(p, "drop table models")),
        ("a column dropped", "refuse", lambda p: sql(p, "alter table messages drop column context")),
        ("a zero-byte file", "accept", lambda p: p.write_bytes(b"")),
        ("a FIFO", "refuse", lambda p: (p.unlink(), os.mkfifo(p))),
        ("a directory", "refuse", lambda p: (p.unlink(), p.mkdir())),
        ("a symlink loop", "refuse", lambda p: (p.unlink(), os.symlink(p, p))),
        ("a symlink to /dev/null", "refuse", lambda p: (p.unlink(), os.symlink("/dev/null", p))),
        ("a dangling symlink", "refuse", lambda p: (p.unlink(), os.symlink(p.parent / "gone" / "x", p))),
        ("a missing directory", "accept", None),  # made by the runner: the log's path inside a new directory
    ]
    return cases


def run_log_case(work: Path, name: str, expected: str, make) -> list[Outcome]:
    case_dir = Path(tempfile.mkdtemp(dir=work))
    db = case_dir / "x.db"
    healthy_log(db)
    if make is None:
        db = case_dir / "new" / "dir" / "x.db"
    else:
        make(db)
    before = digest(db)
    counted = message_count(db)
    outcomes = []
    code, err, ran = chat_in_terminal(["--db", str(db), "--threads", "1", "--strategy", "greedy"])
    chat = Outcome("logs", f"chat: {name}", expected, code, err)
    if expected == "refuse" and ran:
        chat.code = 0  # opened a log it should have refused
    chat.lost = (expected == "refuse" and digest(db) != before) or (0 < counted > message_count(db))
    outcomes.append(chat)
    if expected != "accept" or make is not None:
        before = digest(db)
        code, err, _ = chatbot("retrain", "--db", str(db), "--export", str(case_dir / "p.tsv"))
        expected_retrain = "refuse" if expected == "refuse" or name == "a zero-byte file" else expected
        retrain = Outcome("logs", f"retrain: {name}", expected_retrain, code, err)
        retrain.lost = expected_retrain == "refuse" and digest(db) != before
        outcomes.append(retrain)
    shutil.rmtree(case_dir, ignore_errors=True)
    return outcomes


def message_count(db: Path) -> int:
    try:
        if not db.is_file() or db.is_symlink():
            return 0
        return sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("select count(*) from messages").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0


# --- model directories --------------------------------------------------------------------------

BAD_VALUES = {
    "a string": "12",
    "true": True,
    "null": None,
    "a list": [1],
    "an object": {"a": 1},
    "zero": 0,
    "negative": -5,
    "huge": 10**12,
    "NaN": float("nan"),
    "5000 digits": "INT5000",
}
VALID = {
    ("dropout", "zero"),
    ("context_turns", "zero"),
    ("output_rank", "zero"),
    ("input_feeding", "true"),
    ("tie_embeddings", "true"),
}  # fmt: skip  (values a model may have: judged by their handling only)
FIELDS = ["vocab_size", "embedding_dim", "hidden_size", "layers", "attention", "output_rank", "dropout",
          "max_source_tokens", "max_reply_tokens", "context_turns", "input_feeding", "tie_embeddings"]  # fmt: skip


def dumps(config: dict) -> str:
    return json.dumps(config).replace('"INT5000"', "9" * 5000)


def header_of(path: Path) -> tuple[dict, int]:
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + size]), size


def set_header(path: Path, text: str) -> None:
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    raw = text.encode()
    raw += b" " * max(0, size - len(raw))
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + size :])


def model_cases() -> list[tuple]:
    """(name, expected, make(model directory)) for each kind of damage."""
    cases: list[tuple] = []
    for name in FIELDS:
        for label, value in BAD_VALUES.items():
            if name in ("input_feeding", "tie_embeddings") and label in ("zero",):
                continue  # 0 is no boolean either, but one case of it is enough
            expected = "either" if (name, label) in VALID else "refuse"
            cases.append((f"config {name} = {label}", expected, lambda m, n=name, v=value: set_model(m, n, v)))
    config_file = [
        ("config.json missing", lambda m: (m / "config.json").unlink()),
        ("config.json empty", lambda m: (m / "config.json").write_text("")),
        ("config.json not JSON", lambda m: (m / "config.json").write_text("{model: 1")),
        ("config.json a list", lambda m: (m / "config.json").write_text("[1, 2]")),
        ("config.json without model", lambda m: (m / "config.json").write_text('{"train": {}}')),
        ("config.json nested 100,000 deep", lambda m: (m / "config.json").write_text("[" * 100_000 + "]" * 100_000)),
        ("config.json 2 MB", lambda m: (m / "config.json").write_text(" " * (2 << 20) + "{}")),
        ("config.json not UTF-8", lambda m: (m / "config.json").write_bytes(b'{"model": "\xff"}')),
        ("config.json a directory", lambda m: ((m / "config.json").unlink(), (m / "config.json").mkdir())),
        ("config.json a FIFO", lambda m: ((m / "config.json").unlink(), os.mkfifo(m / "config.json"))),
        (
            "config.json a symlink loop",
            lambda m: ((m / "config.json").unlink(), os.symlink(m / "config.json", m / "config.json")),
        ),
        (
            "config.json a 5000-digit integer",
            lambda m: (m / "config.json").write_text('{"model": {}, "x": ' + "9" * 5000 + "}"),
        ),
    ]
    for section in ("train", "best", "last", "lineage"):
        config_file.append((f"config.json '{section}' a list", lambda m, s=section: set_section(m, s, [1])))
    cases += config_file
    cases += [
        ("tokenizer missing", lambda m: (m / "tokenizer.model").unlink()),
        ("tokenizer empty", lambda m: (m / "tokenizer.model").write_bytes(b"")),
        ("tokenizer random bytes", lambda m: (m / "tokenizer.model").write_bytes(noise(5000, 3))),
        (
            "tokenizer truncated",
            lambda m: (m / "tokenizer.model").write_bytes((m / "tokenizer.model").read_bytes()[:1000]),
        ),
        ("tokenizer a directory", lambda m: ((m / "tokenizer.model").unlink(), (m / "tokenizer.model").mkdir())),
        ("tokenizer a FIFO", lambda m: ((m / "tokenizer.model").unlink(), os.mkfifo(m / "tokenizer.model"))),
        (
            "tokenizer a symlink loop",
            lambda m: ((m / "tokenizer.model").unlink(), os.symlink(m / "tokenizer.model", m / "tokenizer.model")),
        ),
        ("tokenizer of another size", lambda m: set_model(m, "vocab_size", header_vocab(m) - 1)),
    ]
    w = "model.safetensors"
    cases += [
        ("weights missing", lambda m: (m / w).unlink()),
        ("weights empty", lambda m: (m / w).write_bytes(b"")),
        ("weights 7 bytes", lambda m: (m / w).write_bytes(b"\x01" * 7)),
        ("weights header size lies (huge)", lambda m: overwrite(m / w, 0, (10**12).to_bytes(8, "little"))),
        ("weights header size lies (zero)", lambda m: overwrite(m / w, 0, bytes(8))),
        ("weights header not JSON", lambda m: set_header(m / w, "{nope")),
        ("weights header a list", lambda m: set_header(m / w, "[1]")),
        (
            "weights header 5000-digit integer",
            lambda m: set_header(
                m / w,
                json.dumps(header_of(m / w)[0]).replace(
                    '"data_offsets": [', '"data_offsets": [' + "9" * 5000 + ", ", 1
                ),
            ),
        ),
        ("weights header nested deep", lambda m: set_header(m / w, "[" * 50_000 + "]" * 50_000)),
        (
            "weights truncated by half",
            lambda m: (m / w).write_bytes((m / w).read_bytes()[: (m / w).stat().st_size // 2]),
        ),
        ("weights truncated by a byte", lambda m: (m / w).write_bytes((m / w).read_bytes()[:-1])),
        ("weights a directory", lambda m: ((m / w).unlink(), (m / w).mkdir())),
        ("weights a FIFO", lambda m: ((m / w).unlink(), os.mkfifo(m / w))),
        ("weights a symlink loop", lambda m: ((m / w).unlink(), os.symlink(m / w, m / w))),
        ("weights a tensor renamed", lambda m: retensor(m, lambda h, n: h.__setitem__("renamed", h.pop(n)))),
        ("weights a tensor dropped", lambda m: retensor(m, lambda h, n: h.pop(n))),
        ("weights a shape changed", lambda m: retensor(m, lambda h, n: h[n].__setitem__("shape", [1, 1]))),
        ("weights a shape negative", lambda m: retensor(m, lambda h, n: h[n].__setitem__("shape", [-1]))),
        (
            "weights offsets outside the file",
            lambda m: retensor(m, lambda h, n: h[n].__setitem__("data_offsets", [0, 10**15])),
        ),
        (
            "weights offsets reversed",
            lambda m: retensor(m, lambda h, n: h[n].__setitem__("data_offsets", h[n]["data_offsets"][::-1])),
        ),
        (
            "weights metadata dtype unknown",
            lambda m: retensor(m, lambda h, n: h.__setitem__("__metadata__", {"dtype": "float8"})),
        ),
        ("weights metadata a list", lambda m: retensor(m, lambda h, n: h.__setitem__("__metadata__", [1]))),
        ("weights NaN in the data", lambda m: nan_weights(m)),
    ]
    for dtype in ("I16", "BF16", "F32", "I32", "U8", "F64", "BOOL", "nonsense"):
        cases.append((f"weights dtype says {dtype}", lambda m, d=dtype: retype_all(m, d)))
    return [(case[0], "refuse", case[1]) if len(case) == 2 else case for case in cases]


def set_model(model: Path, name: str, value) -> None:
    config = json.loads((model / "config.json").read_text())
    config["model"][name] = value
    (model / "config.json").write_text(dumps(config))


def set_section(model: Path, section: str, value) -> None:
    config = json.loads((model / "config.json").read_text())
    config[section] = value
    (model / "config.json").write_text(json.dumps(config))


def header_vocab(model: Path) -> int:
    return json.loads((model / "config.json").read_text())["model"]["vocab_size"]


def retensor(model: Path, change) -> None:
    path = model / "model.safetensors"
    header, _ = header_of(path)
    name = next(k for k in header if k != "__metadata__")
    change(header, name)
    set_header(path, json.dumps(header))


def retype_all(model: Path, dtype: str) -> None:
    path = model / "model.safetensors"
    header, _ = header_of(path)
    saved = (header.get("__metadata__") or {}).get("dtype", "float32")
    as_saved = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}[saved]
    if dtype == as_saved:
        dtype = "F16" if as_saved == "F32" else "F32"
    for name, entry in header.items():
        if name != "__metadata__":
            entry["dtype"] = dtype
    set_header(path, json.dumps(header))


def nan_weights(model: Path) -> None:
    path = model / "model.safetensors"
    header, size = header_of(path)
    name = next(k for k in header if k != "__metadata__")
    start = 8 + size + header[name]["data_offsets"][0]
    nan = {"F32": struct.pack("<f", float("nan")), "F16": b"\x00\x7e", "BF16": b"\xc0\x7f"}[header[name]["dtype"]]
    overwrite(path, start, nan * 4)


def run_model_case(work: Path, base: Path, name: str, expected: str, make) -> list[Outcome]:
    model = Path(tempfile.mkdtemp(dir=work)) / "model"
    shutil.copytree(
        base, model, ignore=shutil.ignore_patterns("*.png", "MODEL_CARD.md", "metrics.jsonl", "figures.json")
    )
    make(model)
    code, err, out = chatbot("reply", "--model", str(model), "--threads", "1", "--strategy", "greedy", "hello")
    shutil.rmtree(model.parent, ignore_errors=True)
    return [Outcome("models", f"reply: {name}", expected, code, err)]


# --- standard input -----------------------------------------------------------------------------


def stdin_cases() -> list[tuple[str, list[str], bytes, int]]:
    """(name, extra flags, input, lines expected out)."""
    plain = []
    lines = {
        "empty input": (b"", 0),
        "one newline": (b"\n", 1),
        "a thousand newlines": (b"\n" * 1000, 1000),
        "NUL bytes": (b"hi\x00there\n\x00\n", 2),
        "invalid UTF-8": (b"\xff\xfe hello\n\xc3\x28\n", 2),
        "overlong UTF-8": (b"\xc0\xaf\xe0\x80\xaf\n", 1),
        "encoded surrogate": (b"\xed\xa0\x80 hi\n", 1),
        "a byte-order mark": (b"\xef\xbb\xbfhello\n", 1),
        "CRLF lines": (b"hello\r\nhow are you\r\n", 2),
        "no final newline": (b"hello\nhow are you", 2),
        "a 1 MB line": (b"a" * (1 << 20) + b"\nhello\n", 2),
        "a 400 KB line without newline": (b"b" * 400_000, 1),
        "100,000 characters exactly": (b"c" * 100_000 + b"\n", 1),
        "escape sequences": (b"\x1b[2J\x1b]0;title\x07 hi\n", 1),
        "right-to-left marks": ("\u202ehello\u202c \u200f\n".encode(), 1),
        "combining marks": (("e" + "\u0301" * 500 + "\n").encode(), 1),
        "emoji sequences": ("👨‍👩‍👧‍👦 🏳️‍🌈 hi\n".encode(), 1),
        "Korean": ("안녕하세요 잘 지냈어요?\n".encode(), 1),
        "Korean and English mixed": ("hello 안녕 how are you 잘 지내\n".encode(), 1),
        "only spaces and tabs": (b"   \t  \n", 1),
        "a 5000-digit number": (b"9" * 5000 + b"\n", 1),
        "2,000 short lines": (b"hi\n" * 2000, 2000),
    }
    for name, (data, n) in lines.items():
        plain.append((name, [], data, n))
    conversations = {
        "a lone surrogate turn": (b'["\\ud800"]\n', 1),
        "a lone surrogate in context": (b'["\\udfff", "hi"]\n', 1),
        "a 5000-digit JSON number": (b"[" + b"9" * 5000 + b"]\n", 1),
        "JSON nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000 + b"\n", 1),
        "a JSON object": (b'{"a": 1}\n', 1),
        "a JSON list of numbers": (b"[1, 2, 3]\n", 1),
        "null in a list": (b'["hi", null]\n', 1),
        "an empty list": (b"[]\n", 1),
        "a thousand turns": (json.dumps(["hi"] * 1000).encode() + b"\n", 1),
        "not JSON": (b"hello there\n", 1),
    }
    for name, (data, n) in conversations.items():
        plain.append((f"--conversations: {name}", ["--conversations"], data, n))
    plain.append(("--json: invalid UTF-8 and escapes", ["--json"], b"\xff\n\x1b[31mred\n", 2))
    return plain


def run_stdin_case(name: str, flags: list[str], data: bytes, lines: int) -> list[Outcome]:
    outcomes = []
    for strategy in ("greedy", "sample"):
        argv = ["reply", *flags, "--strategy", strategy, "--threads", "1", "--max-length", "8"]
        code, err, out = chatbot(*argv, stdin=data, seconds=HANG + 0.25 * lines)  # consensus: ~0.1 s a line
        outcome = Outcome("stdin", f"{strategy}: {name}", "accept", code, err)
        outcome.lost = code == 0 and out.count(b"\n") != lines
        if outcome.lost:
            outcome.notes.append(f"{out.count(NEWLINE)} lines out, {lines} expected")
        outcomes.append(outcome)
    return outcomes


# --- concurrency --------------------------------------------------------------------------------


def concurrency_cases(work: Path) -> list[Outcome]:
    outcomes = []
    db = healthy_log(work / "shared.db", conversations=2)
    tiny = work / "tiny"
    code, err, _ = chatbot(
        "train", "--corpus", "sample", "--out", str(tiny), "--epochs", "1", "--embedding-dim", "16",
        "--hidden-size", "32", "--vocab-size", "600", "--quiet", "--threads", "1", seconds=600,
    )  # fmt: skip
    outcomes.append(Outcome("concurrency", "a tiny model to retrain", "accept", code, err))

    def at_once(argvs: list[list[str]]) -> list[tuple[int | None, str]]:
        procs = [
            subprocess.Popen([sys.executable, "-m", "chatbot", *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for a in argvs
        ]
        results = []
        for p in procs:
            try:
                _, err = p.communicate(timeout=600)
                results.append((p.returncode, err.decode(errors="replace")))
            except subprocess.TimeoutExpired:
                p.kill()
                results.append((None, ""))
        return results

    retrain = ["retrain", "--db", str(db), "--model", str(tiny), "--out", str(work / "mix"), "--no-benchmark"]
    retrain += ["--replay", "", "--epochs", "30", "--threads", "1", "--quiet", "--force"]
    results = at_once([retrain, retrain])
    refused = [r for r in results if r[0] == 1 and "another run is writing" in r[1]]
    finished = [r for r in results if r[0] == 0]
    hung = None in [r[0] for r in results]
    odd = "".join(r[1] for r in results if r[0] not in (0, 1))
    case = Outcome("concurrency", "two retrains into one --out", "either", None if hung else 0, odd)
    case.lost = not (len(refused) == 1 and len(finished) == 1) and not (
        len(finished) == 1 and "already holds" in "".join(r[1] for r in results)
    )
    outcomes.append(case)
    train = ["train", "--corpus", "sample", "--out", str(work / "twice"), "--epochs", "2", "--embedding-dim", "16"]
    train += ["--hidden-size", "32", "--vocab-size", "600", "--quiet", "--threads", "1"]
    results = at_once([train, train])
    case = Outcome(
        "concurrency", "two trains into one --out", "either", None if None in [r[0] for r in results] else 0, ""
    )
    case.lost = sorted(r[0] for r in results) != [0, 1] or not any("another run is writing" in r[1] for r in results)
    outcomes.append(case)
    fresh = work / "fresh.db"
    script = (
        f"from chatbot.storage import Storage; s = Storage({str(fresh)!r}); "
        "s.add_message(s.new_conversation(), 'user', 'hi'); s.close()"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE) for _ in range(4)]
    errs = [p.communicate(timeout=120)[1].decode() for p in procs]
    case = Outcome(
        "concurrency",
        "four processes open one new log at once",
        "accept",
        max(p.returncode for p in procs),
        "".join(errs),
    )
    case.lost = message_count(fresh) != 4
    outcomes.append(case)
    writes = (
        f"from chatbot.storage import Storage\ns = Storage({str(db)!r})\nc = s.new_conversation()\n"
        "for i in range(300): s.add_message(c, 'user', f'line {i}')"
    )
    writer = subprocess.Popen([sys.executable, "-c", writes])
    code, err, _ = chatbot("retrain", "--db", str(db), "--export", str(work / "during.tsv"))
    writer.wait(timeout=120)
    case = Outcome("concurrency", "retrain --export while the chat writes", "accept", code, err)
    case.lost = writer.returncode != 0 or message_count(db) < 2 * 24 + 300
    outcomes.append(case)
    return outcomes


# --- the report ---------------------------------------------------------------------------------


def report(outcomes: list[Outcome]) -> str:
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(o.group, []).append(o)
    rows = ["| group | cases | tracebacks | hangs | wrong exit | lost | as expected |", "|---|---|---|---|---|---|---|"]
    for group, items in groups.items():
        rows.append(
            f"| {group} | {len(items)} | {sum(o.traceback for o in items)} | {sum(o.hung for o in items)} | "
            f"{sum(o.wrong_exit for o in items)} | {sum(o.lost for o in items)} | {sum(o.ok for o in items)} |"
        )
    bad = [o for o in outcomes if not o.ok]
    if bad:
        rows.append("")
        rows += [f"- FAILED {o.group}: {o.case} (exit {o.code}): {o.stderr.strip()[:200]!r} {o.notes}" for o in bad]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="the model whose copies are damaged")
    parser.add_argument("--only", choices=("logs", "models", "stdin", "concurrency"))
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once")
    parser.add_argument("--json", type=Path, help="also write every case's outcome here")
    args = parser.parse_args()
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        work = Path(tmp)
        jobs = []
        if args.only in (None, "logs"):
            jobs += [pool.submit(run_log_case, work, *case) for case in log_cases(work)]
        if args.only in (None, "models"):
            jobs += [pool.submit(run_model_case, work, args.model, *case) for case in model_cases()]
        if args.only in (None, "stdin"):
            jobs += [pool.submit(run_stdin_case, *case) for case in stdin_cases()]
        for job in jobs:
            outcomes += job.result()
        if args.only in (None, "concurrency"):
            outcomes += concurrency_cases(work)
    print(report(outcomes))
    print(f"\n{len(outcomes)} cases in {(time.monotonic() - started) / 60:.1f} min, {args.jobs} at once")
    if args.json:
        args.json.write_text(json.dumps([{**o.__dict__, "ok": o.ok} for o in outcomes], indent=1))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
