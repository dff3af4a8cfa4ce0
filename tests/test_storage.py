import os
import sqlite3
import stat

import pytest
import sqlite_utils

from chatbot.errors import ChatbotError
from chatbot.storage import MIGRATIONS, Storage, migrate

EXPECTED_COLUMNS = {
    "conversations": ["id", "title", "created_at", "updated_at"],
    "messages": ["id", "conversation_id", "role", "text", "created_at", "model", "decoding", "latency_ms", "score", "attention", "reply_to"],
    "feedback": ["id", "message_id", "kind", "rating", "text", "created_at"],
    "models": ["id", "name", "path", "parent", "created_at", "info"],
}


def test_migrated_schema_is_the_expected_one():
    db = sqlite_utils.Database(memory=True)
    assert migrate(db) == [m.__name__ for m in MIGRATIONS]
    for table, columns in EXPECTED_COLUMNS.items():
        assert [c.name for c in db[table].columns] == columns
    assert "messages_fts" in db.table_names()


def test_migrating_again_changes_nothing(tmp_path):
    Storage(tmp_path / "chat.db").close()
    db = sqlite_utils.Database(tmp_path / "chat.db")
    before = db.schema
    assert migrate(db) == []
    assert db.schema == before


def test_file_is_private_and_in_wal_mode(tmp_path):
    store = Storage(tmp_path / "chat.db")
    assert stat.S_IMODE(os.stat(tmp_path / "chat.db").st_mode) == 0o600
    assert store.db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_messages_feedback_and_search(tmp_path):
    store = Storage(tmp_path / "chat.db")
    c = store.new_conversation("first")
    u = store.add_message(c, "user", "I love sourdough bread")
    b = store.add_message(c, "bot", "bread is nice", model="m", decoding={"strategy": "greedy"}, latency_ms=3.5, score=-2.0, reply_to=u)
    store.rate(b, -1)
    store.correct(b, "sourdough is the best bread")
    assert [m["role"] for m in store.messages(c)] == ["user", "bot"]
    assert [f["kind"] for f in store.feedback(b)] == ["rating", "correction"]
    assert {m["id"] for m in store.search("bread")} == {u, b}
    assert store.search('sourdough" OR "') is not None  # FTS syntax in a query is quoted, never an error
    store.rename_conversation(c, "renamed")
    assert store.conversations()[0]["title"] == "renamed" and store.conversations()[0]["messages"] == 2
    store.delete_conversation(c)
    assert store.conversations() == [] and store.search("bread") == []


def test_corrupt_database_is_a_clear_error_and_left_alone(tmp_path):
    path = tmp_path / "chat.db"
    path.write_bytes(b"this is not sqlite" * 100)
    before = path.read_bytes()
    with pytest.raises(ChatbotError, match="cannot use the chat database"):
        Storage(path)
    assert path.read_bytes() == before


def test_locked_database_is_a_clear_error(tmp_path, monkeypatch):
    import chatbot.storage as storage

    monkeypatch.setattr(storage, "BUSY_TIMEOUT_MS", 200)
    store = Storage(tmp_path / "chat.db")
    c = store.new_conversation()
    blocker = sqlite3.connect(tmp_path / "chat.db")
    blocker.execute("begin exclusive")
    with pytest.raises(ChatbotError, match="could not write"):
        store.add_message(c, "user", "hello")
    blocker.rollback()
    store.add_message(c, "user", "hello")
