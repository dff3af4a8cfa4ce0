"""The dialog log: one SQLite file, owned by this module alone (widgets never touch it).

Every message, its conversation, the model and decoding settings that produced it, its timing,
attention and feedback. Writes commit before the app shows them as sent or final; WAL mode lets
a retraining run read while the chat writes. Schema changes are named migrations, appended to
MIGRATIONS and never edited, recorded in `_migrations` and applied on open.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

from chatbot.errors import ChatbotError

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


def m002_message_search(db: sqlite_utils.Database) -> None:
    db["messages"].enable_fts(["text"], fts_version="FTS5", create_triggers=True, tokenize="unicode61")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [m001_initial, m002_message_search]


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Run the migrations this database has not seen yet; return their names."""
    if "_migrations" not in db.table_names():
        db["_migrations"].create({"name": str, "applied_at": str}, pk="name")
    done = {row["name"] for row in db["_migrations"].rows}
    applied = []
    for migration in MIGRATIONS:
        if migration.__name__ in done:
            continue
        with db.conn:
            migration(db)
            db["_migrations"].insert({"name": migration.__name__, "applied_at": now()})
        applied.append(migration.__name__)
    return applied


# --- the store --------------------------------------------------------------------------------


class Storage:
    """The chat's log. All methods commit before they return."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.writing = threading.Lock()  # the chat writes from its main, reply and loading threads; one connection
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)  # readable by its owner only
                os.close(fd)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None)
            self.db = sqlite_utils.Database(conn)
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            migrate(self.db)
        except (sqlite3.DatabaseError, OSError) as err:
            raise ChatbotError(f"{self.path}: cannot use the chat database ({_reason(err)})") from None

    def close(self) -> None:
        self.db.close()

    def _write(self, action):
        try:
            with self.writing, self.db.conn:
                return action()
        except sqlite3.DatabaseError as err:
            raise ChatbotError(f"{self.path}: could not write ({_reason(err)})") from None

    # conversations

    def new_conversation(self, title: str = "New conversation") -> int:
        stamp = now()
        return self._write(lambda: self.db["conversations"].insert({"title": title, "created_at": stamp, "updated_at": stamp}).last_pk)

    def conversations(self) -> list[dict]:
        """Newest first, each with its message count."""
        return list(self.db.query(
            "select c.*, count(m.id) as messages from conversations c left join messages m on m.conversation_id = c.id "
            "group by c.id order by c.updated_at desc, c.id desc"
        ))

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self._write(lambda: self.db["conversations"].update(conversation_id, {"title": title, "updated_at": now()}))

    def delete_conversation(self, conversation_id: int) -> None:
        def delete():
            ids = [r["id"] for r in self.db.query("select id from messages where conversation_id = ?", [conversation_id])]
            if ids:
                marks = ",".join("?" * len(ids))
                self.db.execute(f"delete from feedback where message_id in ({marks})", ids)
            self.db.execute("delete from messages where conversation_id = ?", [conversation_id])
            self.db.execute("delete from conversations where id = ?", [conversation_id])

        self._write(delete)

    # messages

    def add_message(self, conversation_id: int, role: str, text: str, *, model: str | None = None, decoding: dict | None = None,
                    latency_ms: float | None = None, score: float | None = None, attention: dict | None = None,
                    reply_to: int | None = None) -> int:
        if role not in ("user", "bot"):
            raise ValueError(f"role must be 'user' or 'bot', not {role!r}")
        row = {
            "conversation_id": conversation_id, "role": role, "text": text, "created_at": now(), "model": model,
            "decoding": json.dumps(decoding) if decoding is not None else None, "latency_ms": latency_ms, "score": score,
            "attention": json.dumps(attention, ensure_ascii=False) if attention is not None else None, "reply_to": reply_to,
        }

        def insert():
            pk = self.db["messages"].insert(row).last_pk
            self.db["conversations"].update(conversation_id, {"updated_at": row["created_at"]})
            return pk

        return self._write(insert)

    def messages(self, conversation_id: int) -> list[dict]:
        return list(self.db.query("select * from messages where conversation_id = ? order by id", [conversation_id]))

    def message(self, message_id: int) -> dict:
        return self.db["messages"].get(message_id)

    def search(self, query: str, limit: int = 50) -> list[dict]:
        """Full-text search over every message; the query is quoted, so any text is safe."""
        quoted = " ".join('"' + word.replace('"', '""') + '"' for word in query.split())
        if not quoted:
            return []
        return list(self.db.query(
            "select m.*, c.title from messages_fts f join messages m on m.id = f.rowid "
            "join conversations c on c.id = m.conversation_id where messages_fts match ? order by m.id desc limit ?",
            [quoted, limit],
        ))

    # feedback

    def rate(self, message_id: int, rating: int) -> int:
        if rating not in (1, -1):
            raise ValueError("rating must be +1 or -1")
        return self._write(lambda: self.db["feedback"].insert({"message_id": message_id, "kind": "rating", "rating": rating, "created_at": now()}).last_pk)

    def correct(self, message_id: int, text: str) -> int:
        return self._write(lambda: self.db["feedback"].insert({"message_id": message_id, "kind": "correction", "text": text, "created_at": now()}).last_pk)

    def prefer(self, message_id: int, text: str, decoding: dict) -> int:
        """A choice among side-by-side replies: which text (and strategy) the user picked."""
        choice = json.dumps({"text": text, "decoding": decoding}, ensure_ascii=False)
        row = {"message_id": message_id, "kind": "preference", "text": choice, "created_at": now()}
        return self._write(lambda: self.db["feedback"].insert(row).last_pk)

    def feedback(self, message_id: int) -> list[dict]:
        return list(self.db.query("select * from feedback where message_id = ? order by id", [message_id]))

    # models

    def register_model(self, path: str, name: str | None = None, parent: str | None = None, info: dict | None = None) -> None:
        row = {"name": name or Path(path).name, "path": str(path), "parent": parent, "created_at": now(), "info": json.dumps(info or {})}
        self._write(lambda: self.db["models"].insert(row, ignore=True))  # a path is registered once

    def models(self) -> list[dict]:
        return list(self.db.query("select * from models order by id"))


def _reason(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__
