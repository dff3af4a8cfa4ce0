"""Logs that are damaged, not ours, from a newer version, or not files at all: every command that
opens a log (the chat's storage, retrain) refuses them in one line before writing a byte."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bench.fault_campaign import healthy_log
from chatbot.errors import ChatbotError
from chatbot.storage import Storage
from tests.test_faults import run


def five_conversations(path: Path) -> Path:
    """A log of five conversations of twelve exchanges, every reply rated good and one corrected
    (the fault campaign's own): enough pages that a damaged one lies in the middle."""
    return healthy_log(path, conversations=5)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def corrupt(path: Path, start: int, end: int) -> None:
    data = bytearray(path.read_bytes())
    rng = random.Random(start)
    data[start:end] = bytes(rng.randrange(256) for _ in range(end - start))
    path.write_bytes(bytes(data))


def intact(path: Path) -> bool:
    try:
        return sqlite3.connect(path).execute("pragma integrity_check").fetchone()[0] == "ok"
    except sqlite3.DatabaseError:
        return False


PAGE = 4096


@pytest.mark.parametrize("page", ["second", "middle", "last"])
def test_a_log_with_a_corrupt_page_is_refused_by_the_chat_and_by_retrain(page, tmp_path, capsys):
    db = five_conversations(tmp_path / "x.db")
    pages = db.stat().st_size // PAGE
    assert pages >= 8
    start = {"second": 1, "middle": pages // 2, "last": pages - 1}[page] * PAGE
    corrupt(db, start, start + PAGE)
    assert not intact(db)
    before = digest(db)
    with pytest.raises(ChatbotError, match="damaged chat log") as refused:
        Storage(db)
    assert "\n" not in str(refused.value)
    code, lines = run(["retrain", "--db", str(db), "--export", str(tmp_path / "p.tsv")], capsys)
    assert code == 1 and len(lines) == 1 and "damaged chat log" in lines[0], lines
    assert digest(db) == before and not (tmp_path / "p.tsv").exists()


def test_another_applications_database_is_not_made_a_chat_log(tmp_path, capsys):
    db = tmp_path / "theirs.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        "create table invoices (id integer primary key, total real); insert into invoices values (1, 9.5)"
    )
    conn.close()
    before = digest(db)
    with pytest.raises(ChatbotError, match="not a chat log .*invoices"):
        Storage(db)
    code, lines = run(["retrain", "--db", str(db), "--export", str(tmp_path / "p.tsv")], capsys)
    assert code == 1 and len(lines) == 1 and "not a chat log" in lines[0], lines
    assert digest(db) == before
    assert [r[0] for r in sqlite3.connect(db).execute("select name from sqlite_master")] == ["invoices"]


def test_an_empty_file_or_a_missing_directory_starts_a_log_and_says_so(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    store = Storage(empty)
    assert store.notes == [f"{empty} was an empty file: a new chat log begins in it"]
    store.close()
    nested = tmp_path / "new" / "dir" / "chat.db"
    store = Storage(nested)
    assert store.notes == [f"a new chat log: {nested} (its directory made too)"]
    store.close()
    assert Storage(nested).notes == []  # the second time it is the log it was


async def test_the_chat_says_a_new_log_on_its_first_line(overfit_dir, tmp_path):
    from chatbot.app.chat_app import ChatApp
    from chatbot.session import open_session

    session = open_session(overfit_dir, tmp_path / "fresh.db", False, "cpu", "greedy", None)
    app = ChatApp(session)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        shown = [n.message for n in app._notifications]
        assert shown and shown[0].startswith(f"a new chat log: {tmp_path / 'fresh.db'}"), shown
    session.storage.close()


def test_a_log_from_a_newer_chatbot_is_refused_unchanged(tmp_path, capsys):
    db = five_conversations(tmp_path / "x.db")
    conn = sqlite3.connect(db)
    conn.execute("insert into _migrations (name, applied_at) values ('m900_from_the_future', 'then')")
    conn.commit()
    conn.close()
    before = digest(db)
    with pytest.raises(ChatbotError, match="made by a newer chatbot"):
        Storage(db)
    code, lines = run(["retrain", "--db", str(db), "--export", str(tmp_path / "p.tsv")], capsys)
    assert code == 1 and len(lines) == 1 and "made by a newer chatbot" in lines[0], lines
    assert digest(db) == before


def test_a_dropped_search_trigger_is_put_back_and_search_finds_every_message(tmp_path):
    db = five_conversations(tmp_path / "x.db")
    conn = sqlite3.connect(db)
    conn.execute("drop trigger messages_ai")
    conn.execute("insert into messages (conversation_id, role, text, created_at) values (1, 'user', 'zebras', 'now')")
    conn.commit()
    conn.close()
    store = Storage(db)
    assert any("search" in note for note in store.notes)
    store.add_message(store.new_conversation(), "user", "zebrafish")
    assert sorted(m["text"] for m in store.search("zebra")) == ["zebrafish", "zebras"]
    assert intact(db)


def test_a_fifo_in_place_of_the_log_never_hangs(tmp_path):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ChatbotError, match="not a regular file"):
        Storage(fifo)
    result = subprocess.run(
        [sys.executable, "-m", "chatbot", "retrain", "--db", str(fifo), "--export", str(tmp_path / "p.tsv")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "not a regular file" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_an_export_to_a_fifo_never_hangs(tmp_path):
    db = five_conversations(tmp_path / "x.db")
    fifo = tmp_path / "pairs.tsv"
    os.mkfifo(fifo)
    result = subprocess.run(
        [sys.executable, "-m", "chatbot", "retrain", "--db", str(db), "--export", str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "not a regular file" in result.stderr, result.stderr
    assert fifo.is_fifo()


def test_a_healthy_log_opens_as_before_while_another_chat_writes(tmp_path):
    db = five_conversations(tmp_path / "x.db")
    writer = Storage(db)
    conversation = writer.new_conversation()
    done = threading.Event()

    def write():
        for i in range(50):
            writer.add_message(conversation, "user", f"line {i}")
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    reader = Storage(db)
    assert reader.notes == []
    thread.join()
    assert done.is_set() and len(reader.messages(conversation)) == 50


def test_serve_refuses_a_damaged_log_before_it_listens(tmp_path, capsys):
    db = five_conversations(tmp_path / "x.db")
    corrupt(db, PAGE, 2 * PAGE)
    code, lines = run(["serve", "--db", str(db), "--port", "8765"], capsys)
    assert code == 1 and len(lines) == 1 and "damaged chat log" in lines[0], lines
