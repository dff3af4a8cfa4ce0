import os
import sqlite3
import stat

import pytest
import sqlite_utils

from chatbot.errors import ChatbotError
from chatbot.storage import MIGRATIONS, Storage, migrate

EXPECTED_COLUMNS = {
    "conversations": ["id", "title", "created_at", "updated_at"],
    "messages": [
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
        "context",
    ],
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
    b = store.add_message(
        c, "bot", "bread is nice", model="m", decoding={"strategy": "greedy"}, latency_ms=3.5, score=-2.0, reply_to=u
    )
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


@pytest.mark.parametrize(
    "damage",
    [
        "drop table messages_fts; drop table messages",
        "drop trigger messages_ai; drop trigger messages_ad; drop trigger messages_au; "
        "alter table messages rename to old_messages",
        "drop table feedback",
        "drop table messages_fts; drop table messages; create table messages (conversation_id, role, text)",
    ],
)
def test_a_damaged_log_is_refused_on_open_and_left_alone(tmp_path, damage):
    path = tmp_path / "chat.db"
    store = Storage(path)
    store.add_message(store.new_conversation(), "user", "hello")
    store.close()
    conn = sqlite3.connect(path)
    conn.executescript(damage)
    before = conn.execute("select sql from sqlite_master order by name").fetchall()
    conn.close()
    with pytest.raises(ChatbotError, match="damaged chat log"):
        Storage(path)
    assert sqlite3.connect(path).execute("select sql from sqlite_master order by name").fetchall() == before


def test_a_table_dropped_while_the_chat_runs_is_never_recreated_without_its_keys(tmp_path):
    store = Storage(tmp_path / "chat.db")
    c = store.new_conversation()
    other = sqlite3.connect(tmp_path / "chat.db")
    other.executescript("drop table messages_fts; drop table messages")
    with pytest.raises(ChatbotError, match="could not write"):
        store.add_message(c, "user", "hello")
    assert "messages" not in store.db.table_names()


def test_search_matches_prefixes_and_each_hit_is_one_message(tmp_path):
    store = Storage(tmp_path / "chat.db")
    c = store.new_conversation()
    ids = [store.add_message(c, "user", text) for text in ("zebras are striped", "I saw zebras", "no match here")]
    assert [m["id"] for m in store.search("zeb")] == [ids[1], ids[0]]
    assert [m["id"] for m in store.search("saw zeb")] == [ids[1]]


def test_a_reply_has_one_rating_and_one_correction_at_most(tmp_path):
    store = Storage(tmp_path / "chat.db")
    c = store.new_conversation()
    b = store.add_message(c, "bot", "hi")
    store.rate(b, 1)
    store.rate(b, -1)
    store.correct(b, "first try")
    store.correct(b, "hello there")
    assert [(f["kind"], f["rating"], f["text"]) for f in store.feedback(b)] == [
        ("rating", -1, None),
        ("correction", None, "hello there"),
    ]
    assert store.marks(c) == {b: {"rating": -1, "correction": "hello there"}}
    store.rate(b, 0)
    assert store.marks(c) == {b: {"correction": "hello there"}}


def test_a_log_from_before_reply_context_gains_the_column_and_keeps_its_rows(tmp_path):
    from chatbot.storage import m001_initial, m002_message_search

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    db["_migrations"].create({"name": str, "applied_at": str}, pk="name")
    for migration in (m001_initial, m002_message_search):
        migration(db)
        db["_migrations"].insert({"name": migration.__name__, "applied_at": "2026-11-22"})
    db["conversations"].insert({"id": 1, "title": "old", "created_at": "x", "updated_at": "x"})
    db["messages"].insert({"conversation_id": 1, "role": "user", "text": "hello from before", "created_at": "x"})
    db.close()
    store = Storage(path)
    assert "context" in {c.name for c in store.db["messages"].columns}
    assert [m["text"] for m in store.messages(1)] == ["hello from before"] and store.search("hello")
    store.add_message(1, "bot", "hi", reply_to=1, context=[])
    assert store.messages(1)[-1]["context"] == "[]"


def test_chats_opening_a_new_log_at_once_all_start(tmp_path):
    """Two browser tabs start two chats on one new log: neither may find the other's half-made tables."""
    import subprocess
    import sys

    path = tmp_path / "chat.db"
    opener = f"from chatbot.storage import Storage; Storage({str(path)!r}).close()"
    for _ in range(3):
        path.unlink(missing_ok=True)
        procs = [subprocess.Popen([sys.executable, "-c", opener], stderr=subprocess.PIPE) for _ in range(3)]
        assert [(p.wait(timeout=120), p.stderr.read()) for p in procs] == [(0, b"")] * 3
        applied = sqlite3.connect(path).execute("select name from _migrations order by name").fetchall()
        assert applied == [(m.__name__,) for m in MIGRATIONS]


def test_a_migration_that_fails_halfway_leaves_nothing_of_itself(tmp_path, monkeypatch):
    import chatbot.storage as storage

    def broken(db):
        db.execute("create table half (x)")
        db.execute("this is not sql")

    monkeypatch.setattr(storage, "MIGRATIONS", [MIGRATIONS[0], broken])
    with pytest.raises(ChatbotError, match="cannot use the chat database"):
        Storage(tmp_path / "chat.db")
    db = sqlite3.connect(tmp_path / "chat.db")
    assert "half" not in {r[0] for r in db.execute("select name from sqlite_master")}
    assert db.execute("select name from _migrations").fetchall() == [(MIGRATIONS[0].__name__,)]
    monkeypatch.setattr(storage, "MIGRATIONS", MIGRATIONS)
    Storage(tmp_path / "chat.db").close()  # the real migrations finish the log
