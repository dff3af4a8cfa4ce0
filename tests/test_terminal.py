"""`python chat.py` in a real terminal (tmux): type, read the screen, then kill -9 and check the log."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_chat_in_a_real_terminal_then_kill_9_leaves_the_log_intact(overfit_dir, tmp_path, sample_pairs):
    db = tmp_path / "chat.db"
    session = f"chatbot-test-{time.monotonic_ns()}"
    flags = f"--model {overfit_dir} --db {db} --device cpu --threads 1 --strategy greedy"
    command = f"{sys.executable} {ROOT / 'chat.py'} {flags}"
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", command)
    try:
        screen = lambda: tmux("capture-pane", "-p", "-t", session)  # noqa: E731
        assert wait_for(lambda: "Say something" in screen()), screen()
        pair = sample_pairs[2]
        tmux("send-keys", "-t", session, "-l", pair.source)
        tmux("send-keys", "-t", session, "Enter")
        assert wait_for(lambda: pair.reply in screen() and " ms " in screen()), screen()
        pid = int(tmux("list-panes", "-t", session, "-F", "#{pane_pid}").strip())
        subprocess.run(["kill", "-9", str(pid)], check=True)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    conn = sqlite3.connect(db)
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("select role, text from messages order by id").fetchall()
    assert rows == [("user", pair.source), ("bot", pair.reply)]


def test_a_chat_that_never_hears_the_hangup_still_leaves_when_its_terminal_closes(overfit_dir, tmp_path):
    """Under `make chat` the hangup reaches make, not the chat; `trap '' HUP` makes the same case."""
    db = tmp_path / "chat.db"
    session = f"chatbot-test-{time.monotonic_ns()}"
    chat = f"{sys.executable} {ROOT / 'chat.py'} --model {overfit_dir} --db {db} --device cpu --threads 1"
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", f"sh -c \"trap '' HUP; exec {chat}\"")
    try:
        screen = lambda: tmux("capture-pane", "-p", "-t", session)  # noqa: E731
        assert wait_for(lambda: "Say something" in screen()), screen()
        pid = int(tmux("list-panes", "-t", session, "-F", "#{pane_pid}").strip())  # the chat: sh execs it
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    running = lambda: Path(f"/proc/{pid}").exists() and "python" in Path(f"/proc/{pid}/cmdline").read_text()  # noqa: E731
    assert wait_for(lambda: not running(), timeout=20), "the chat is still running after its terminal closed"
