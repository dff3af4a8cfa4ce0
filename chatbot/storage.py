"""The dialog log: one SQLite file, owned by this module alone (widgets never touch it).

Every message, its conversation, the model and decoding settings that produced it, its timing,
attention and feedback. Writes commit before the app shows them as sent or final; WAL mode lets
a retraining run read while the chat writes. Schema changes are named migrations, appended to
MIGRATIONS and never edited, recorded in `_migrations` and applied on open.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from chatbot.errors import ChatbotError
from chatbot.i18n import tr
from chatbot.validation import clean_text

ENV_VAR = "CHATBOT_DB"
BUSY_TIMEOUT_MS = 5000


def default_db_path() -> Path:
    """$CHATBOT_DB, else chat.db in the platform's user-data directory."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    from platformdirs import user_data_dir

    return Path(user_data_dir("chatbot")) / "chat.db"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# --- migrations: append only ------------------------------------------------------------------


def m001_initial(db: sqlite_utils.Database) -> None:
    db["conversations"].create({"id": int, "title": str, "created_at": str, "updated_at": str}, pk="id")
    db["messages"].create(
        {
            "id": int,
            "conversation_id": int,
            "role": str,  # 'user' or 'bot'
            "text": str,
            "created_at": str,
            "model": str,  # the model directory that produced a bot message
            "decoding": str,  # JSON: the strategy and its settings
            "latency_ms": float,
            "score": float,
            "attention": str,  # JSON: pieces, weights, per-token log-probabilities, alternatives
            "reply_to": int,  # the user message a bot message answers
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
    )
    db["messages"].create_index(["conversation_id"])
    db["feedback"].create(
        {
            "id": int,
            "message_id": int,
            "kind": str,  # 'rating', 'correction' or 'preference'
            "rating": int,  # +1 good, -1 bad
            "text": str,  # the corrected reply, or the preferred one
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("message_id", "messages", "id")],
    )
    db["models"].create({"id": int, "name": str, "path": str, "parent": str, "created_at": str, "info": str}, pk="id")
    db["models"].create_index(["path"], unique=True)


SEARCH_TRIGGERS = {  # what keeps the search index in step with the messages table
    "messages_ai": 'CREATE TRIGGER "messages_ai" AFTER INSERT ON "messages" BEGIN\n'
    '  INSERT INTO "messages_fts" (rowid, "text") VALUES (new.rowid, new."text");\nEND',
    "messages_ad": 'CREATE TRIGGER "messages_ad" AFTER DELETE ON "messages" BEGIN\n'
    '  INSERT INTO "messages_fts" ("messages_fts", rowid, "text") VALUES(\'delete\', old.rowid, old."text");\nEND',
    "messages_au": 'CREATE TRIGGER "messages_au" AFTER UPDATE ON "messages" BEGIN\n'
    '  INSERT INTO "messages_fts" ("messages_fts", rowid, "text") VALUES(\'delete\', old.rowid, old."text");\n'
    '  INSERT INTO "messages_fts" (rowid, "text") VALUES (new.rowid, new."text");\nEND',
}


def m002_message_search(db: sqlite_utils.Database) -> None:
    # What sqlite-utils' enable_fts(["text"], create_triggers=True) makes, statement by statement:
    # its executescript would commit halfway through the migration's transaction.
    db.execute(
        'CREATE VIRTUAL TABLE "messages_fts" USING FTS5 (\n    "text",\n    tokenize=\'unicode61\',\n'
        '    content="messages"\n)'
    )
    db.execute('INSERT INTO "messages_fts" (rowid, "text") SELECT rowid, "text" FROM "messages"')
    for sql in SEARCH_TRIGGERS.values():
        db.execute(sql)


def m003_reply_context(db: sqlite_utils.Database) -> None:
    db["messages"].add_column("context", str)  # JSON: the ids of the earlier messages a reply read with its message


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [m001_initial, m002_message_search, m003_reply_context]


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Run the migrations this database has not seen yet, each in one transaction with its record
    in `_migrations` (a crash leaves it applied or not at all); return their names."""
    has_record = "_migrations" in db.table_names()
    done = {r[0] for r in db.execute("select name from _migrations")} if has_record else set()
    applied = []
    for migration in MIGRATIONS:
        if migration.__name__ in done:  # the usual open: a read, no write lock
            continue
        with immediate(db):
            if "_migrations" not in db.table_names():
                db.execute('CREATE TABLE "_migrations" (\n   "name" TEXT PRIMARY KEY,\n   "applied_at" TEXT\n)')
            if not db.execute("select 1 from _migrations where name = ?", [migration.__name__]).fetchone():
                migration(db)
                db.execute("insert into _migrations (name, applied_at) values (?, ?)", [migration.__name__, now()])
                applied.append(migration.__name__)
    return applied


@contextlib.contextmanager
def immediate(db: sqlite_utils.Database):
    """One write transaction, its lock taken at once (BEGIN IMMEDIATE): committed whole when the
    block ends, rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def opening(path: Path):
    """Hold an exclusive lock on the log's directory while a process opens the log: two chats
    starting at once on a new log (two browser tabs) would otherwise both create its tables."""
    if fcntl is None:  # no flock on this platform: opening at once stays a race
        yield
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


SCHEMA = {  # the columns each table must have, whatever migrations added since
    "conversations": {"id", "title", "created_at", "updated_at"},
    "messages": {
        "context",
        "id",
        "conversation_id",
        "role",
        "text",
        "created_at",
        "model",
        "decoding",
        "latency_ms",
        "score",
        "attention",
        "reply_to",
    },
    "feedback": {"id", "message_id", "kind", "rating", "text", "created_at"},
    "models": {"id", "name", "path", "parent", "created_at", "info"},
    "messages_fts": {"text"},
}


def check_schema(db: sqlite_utils.Database, path: Path) -> None:
    """Refuse a damaged log (a table dropped or rebuilt by hand) rather than write into it."""
    tables = set(db.table_names())
    for table, columns in SCHEMA.items():
        if table not in tables:
            raise damaged(path, tr("the table {table} is missing", table=table))
        lacking = columns - {c.name for c in db[table].columns}
        if lacking:
            raise damaged(
                path, tr("the table {table} lacks the columns {names}", table=table, names=", ".join(sorted(lacking)))
            )


def damaged(path: Path, reason: str) -> ChatbotError:
    """The one line that refuses a damaged log, and says what to do."""
    return ChatbotError(
        tr("{path}: a damaged chat log ({reason}); move it aside or use another --db", path=path, reason=reason)
    )


# SQL: the latest rating of the reply `b` (a reply has one at most; a taken-back one is none)
LATEST_RATING = (
    "(select f.rating from feedback f where f.message_id = b.id and f.kind = 'rating' order by f.id desc limit 1)"
)

QUICK_CHECK_SECONDS = 3.0  # a log too big to check in this time is opened unchecked


def refuse_odd_file(path: Path) -> None:
    """A log is a regular file or nothing yet: a FIFO would block the open forever, a device or
    a directory is no log."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise ChatbotError(
            tr("{path}: cannot use the chat database ({reason})", path=path, reason=_reason(err))
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise ChatbotError(tr("{path}: not a regular file, so not a chat log", path=path))


def inspect_log(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse, before anything is written, a log whose pages are damaged (SQLite's quick_check,
    cut short on a log too big to check quickly), another application's database, or a log a
    newer version of this program has migrated. Raises ChatbotError in one line."""
    deadline = time.monotonic() + QUICK_CHECK_SECONDS
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        verdict = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.OperationalError as err:
        verdict = "ok" if "interrupted" in str(err) else _reason(err)
    except sqlite3.DatabaseError as err:
        if "not a database" in str(err):  # no SQLite file at all: the caller says it cannot use it
            raise
        verdict = _reason(err)
    finally:
        conn.set_progress_handler(None, 0)
    if verdict != "ok":
        raise damaged(
            path, next((line for line in verdict.splitlines() if line.strip() and "***" not in line), verdict)
        )
    tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
    tables = {t for t in tables if not t.startswith("sqlite_")}
    if tables and "_migrations" not in tables:
        raise ChatbotError(
            tr(
                "{path}: not a chat log (it holds another application's tables: {names}); use another --db",
                path=path,
                names=", ".join(sorted(tables)[:5]),
            )
        )
    if tables:
        known = {m.__name__ for m in MIGRATIONS}
        newer = sorted({r[0] for r in conn.execute("select name from _migrations")} - known)
        if newer:
            raise ChatbotError(
                tr(
                    "{path}: made by a newer chatbot (schema {name}): update chatbot to open it",
                    path=path,
                    name=str(newer[-1])[:60],
                )
            )


def repair_search(db: sqlite_utils.Database) -> bool:
    """Put back a search trigger someone dropped and rebuild the index from the messages, which
    are the truth (search would miss every message written since); True if anything was done."""
    present = {r[0] for r in db.execute("select name from sqlite_master where type = 'trigger'")}
    missing = [name for name in SEARCH_TRIGGERS if name not in present]
    if not missing:
        return False
    with immediate(db):
        for name in missing:
            db.execute(SEARCH_TRIGGERS[name])
        db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
    return True


# --- the store --------------------------------------------------------------------------------


class Storage:
    """The chat's log. All methods commit before they return."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.writing = threading.Lock()  # the chat writes from its main, reply and loading threads; one connection
        self.notes: list[str] = []  # what opening did that the user should hear of: a new log, a repair
        try:
            refuse_odd_file(self.path)
            made = not self.path.parent.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                if made:
                    self.notes.append(tr("a new chat log: {path} (its directory made too)", path=self.path))
                else:
                    self.notes.append(tr("a new chat log: {path}", path=self.path))
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)  # readable by its owner only
                os.close(fd)
            elif self.path.stat().st_size == 0:
                self.notes.append(tr("{path} was an empty file: a new chat log begins in it", path=self.path))
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
            )
            self.db = sqlite_utils.Database(conn)
        except (sqlite3.DatabaseError, OSError) as err:
            raise ChatbotError(
                tr("{path}: cannot use the chat database ({reason})", path=self.path, reason=_reason(err))
            ) from None
        try:
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            with opening(self.path):
                inspect_log(conn, self.path)  # before the first write
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA foreign_keys = ON")
                migrate(self.db)
                check_schema(self.db, self.path)
                if repair_search(self.db):
                    self.notes.append(tr("the log's search had lost a trigger: put back, index rebuilt"))
        except (sqlite3.DatabaseError, OSError) as err:
            self.db.close()
            raise ChatbotError(
                tr("{path}: cannot use the chat database ({reason})", path=self.path, reason=_reason(err))
            ) from None
        except ChatbotError:  # each says which file and what to do
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def _write(self, action):
        try:
            with self.writing, self.db.conn:
                return action()
        except sqlite3.DatabaseError as err:
            raise ChatbotError(tr("{path}: could not write ({reason})", path=self.path, reason=_reason(err))) from None

    def _insert(self, table: str, row: dict, conflict: str = "") -> int:
        """Insert one row with plain SQL: unlike sqlite-utils' insert, it never creates a missing
        table (a table dropped while the chat runs is an error, not a new table without its keys)."""
        columns = ", ".join(row)
        cursor = self.db.execute(
            f"insert {conflict} into {table} ({columns}) values ({', '.join('?' * len(row))})", _valid(row.values())
        )
        return cursor.lastrowid

    def _read(self, sql: str, params=()) -> list[dict]:
        try:
            return list(self.db.query(sql, _valid(params)))
        except sqlite3.DatabaseError as err:
            raise ChatbotError(tr("{path}: could not read ({reason})", path=self.path, reason=_reason(err))) from None

    # conversations

    def new_conversation(self, title: str = "New conversation") -> int:
        stamp = now()
        return self._write(
            lambda: self._insert("conversations", {"title": title, "created_at": stamp, "updated_at": stamp})
        )

    def conversations(self) -> list[dict]:
        """Newest first, each with its message count and how many of its replies carry feedback."""
        return self._read(
            "select c.*, count(m.id) as messages, "
            "(select count(*) from feedback f join messages b on b.id = f.message_id "
            "where b.conversation_id = c.id) as feedback "
            "from conversations c left join messages m on m.conversation_id = c.id "
            "group by c.id order by c.updated_at desc, c.id desc"
        )

    def conversation(self, conversation_id: int) -> dict | None:
        rows = self._read("select * from conversations where id = ?", [conversation_id])
        return rows[0] if rows else None

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self._write(
            lambda: self.db.execute(
                "update conversations set title = ?, updated_at = ? where id = ?",
                _valid([title, now(), conversation_id]),
            )
        )

    def delete_conversation(self, conversation_id: int) -> None:
        def delete():
            ids = [
                r["id"] for r in self.db.query("select id from messages where conversation_id = ?", [conversation_id])
            ]
            if ids:
                marks = ",".join("?" * len(ids))
                self.db.execute(f"delete from feedback where message_id in ({marks})", ids)
            self.db.execute("delete from messages where conversation_id = ?", [conversation_id])
            self.db.execute("delete from conversations where id = ?", [conversation_id])

        self._write(delete)

    # messages

    def add_message(
        self,
        conversation_id: int,
        role: str,
        text: str,
        *,
        model: str | None = None,
        decoding: dict | None = None,
        latency_ms: float | None = None,
        score: float | None = None,
        attention: dict | None = None,
        reply_to: int | None = None,
        context: list[int] | None = None,
    ) -> int:
        """Log one message; for a reply, `context` lists the earlier messages it read besides
        `reply_to`, oldest first."""
        if role not in ("user", "bot"):
            raise ValueError(f"role must be 'user' or 'bot', not {role!r}")
        row = {
            "conversation_id": conversation_id,
            "role": role,
            "text": text,
            "created_at": now(),
            "model": model,
            "decoding": json.dumps(decoding) if decoding is not None else None,
            "latency_ms": latency_ms,
            "score": score,
            "attention": json.dumps(attention, ensure_ascii=False) if attention is not None else None,
            "reply_to": reply_to,
            "context": json.dumps(context) if context is not None else None,
        }

        def insert():
            pk = self._insert("messages", row)
            self.db.execute(
                "update conversations set updated_at = ? where id = ?", [row["created_at"], conversation_id]
            )
            return pk

        return self._write(insert)

    def messages(self, conversation_id: int) -> list[dict]:
        return self._read("select * from messages where conversation_id = ? order by id", [conversation_id])

    def message(self, message_id: int) -> dict | None:
        rows = self._read("select * from messages where id = ?", [message_id])
        return rows[0] if rows else None

    def search(self, query: str, limit: int = 50) -> list[dict]:
        """Full-text search over every message, newest first. Each word matches as a prefix
        ("zeb" finds "zebras"), as people expect while they type; words are quoted, so any text
        is safe (no FTS syntax)."""
        quoted = " ".join('"' + word.replace('"', '""') + '"*' for word in query.split())
        if not quoted:
            return []
        return self._read(
            "select m.*, c.title from messages_fts f join messages m on m.id = f.rowid "
            "join conversations c on c.id = m.conversation_id where messages_fts match ? order by m.id desc limit ?",
            [quoted, limit],
        )

    # feedback

    def rate(self, message_id: int, rating: int) -> None:
        """A reply's rating: +1 good, -1 bad, 0 none. It replaces the reply's earlier rating, so a
        reply has one at most."""
        if rating not in (1, -1, 0):
            raise ValueError("rating must be +1, -1 or 0")
        self._replace_feedback(message_id, "rating", {"rating": rating} if rating else None)

    def correct(self, message_id: int, text: str) -> None:
        """The reply a reply should have been; it replaces the reply's earlier correction."""
        self._replace_feedback(message_id, "correction", {"text": text})

    def _replace_feedback(self, message_id: int, kind: str, values: dict | None) -> None:
        def replace():
            self.db.execute("delete from feedback where message_id = ? and kind = ?", [message_id, kind])
            if values is not None:
                self._insert("feedback", {"message_id": message_id, "kind": kind, **values, "created_at": now()})

        self._write(replace)

    def marks(self, conversation_id: int) -> dict[int, dict]:
        """Each reply's rating and correction in a conversation, by message id: what a resumed
        conversation shows beside its replies."""
        rows = self._read(
            "select f.message_id, f.kind, f.rating, f.text from feedback f join messages m on m.id = f.message_id "
            "where m.conversation_id = ? and f.kind in ('rating', 'correction') order by f.id",
            [conversation_id],
        )
        marks: dict[int, dict] = {}
        for r in rows:
            marks.setdefault(r["message_id"], {})[r["kind"]] = r["rating"] if r["kind"] == "rating" else r["text"]
        return marks

    def taught(self) -> list[dict]:
        """What the person taught, oldest first: each reply they corrected (the correction) or
        rated good (the reply as it was; the latest rating counts), with the message it answered,
        and each reply rated bad and not corrected (`shunned`: what not to say again): {"id" (the
        reply's), "message", "reply", "context" (the texts of the turns the reply read, oldest
        first), "taught_at", "shunned"}."""
        corrected = "exists (select 1 from feedback f where f.message_id = b.id and f.kind = 'correction')"
        rows = self._read(
            "select b.id, u.text as message, coalesce("
            "(select f.text from feedback f where f.message_id = b.id and f.kind = 'correction' order by f.id desc "
            "limit 1), b.text) as reply, b.context, (select max(f.created_at) from feedback f "
            "where f.message_id = b.id and f.kind in ('correction', 'rating')) as taught_at, "
            f"(not {corrected} and {LATEST_RATING} = -1) as shunned "
            "from messages b join messages u on u.id = b.reply_to "
            f"where {corrected} or {LATEST_RATING} in (1, -1) order by b.id"
        )
        texts = {}
        ids = {i for r in rows for i in json.loads(r["context"] or "[]")}
        if ids:
            marks = ",".join("?" * len(ids))
            texts = {
                r["id"]: r["text"]
                for r in self._read(f"select id, text from messages where id in ({marks})", list(ids))
            }
        return [
            {
                **r,
                "shunned": bool(r["shunned"]),
                "context": [texts[i] for i in json.loads(r["context"] or "[]") if i in texts],
            }
            for r in rows
        ]

    def prefer(self, message_id: int, text: str, decoding: dict) -> int:
        """A choice among side-by-side replies: which text (and strategy) the user picked."""
        choice = json.dumps({"text": text, "decoding": decoding}, ensure_ascii=False)
        row = {"message_id": message_id, "kind": "preference", "text": choice, "created_at": now()}
        return self._write(lambda: self._insert("feedback", row))

    def feedback(self, message_id: int) -> list[dict]:
        return self._read("select * from feedback where message_id = ? order by id", [message_id])

    # models

    def register_model(
        self, path: str, name: str | None = None, parent: str | None = None, info: dict | None = None
    ) -> None:
        row = {
            "name": name or Path(path).name,
            "path": str(path),
            "parent": parent,
            "created_at": now(),
            "info": json.dumps(info or {}),
        }
        self._write(lambda: self._insert("models", row, "or ignore"))  # a path is registered once

    def models(self) -> list[dict]:
        return self._read("select * from models order by id")


def _valid(params) -> list:
    """Query parameters with every string valid UTF-8 (`clean_text`): SQLite refuses a lone
    surrogate, which pasted or undecodable text may carry."""
    return [clean_text(p) if isinstance(p, str) else p for p in params]


def _reason(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__
