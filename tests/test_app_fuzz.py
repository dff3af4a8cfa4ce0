"""The real app under Textual's pilot, driven by seeded random sequences of every key, of text
typed into every input and dialog (non-finite and huge numbers, odd Unicode, control
characters), of clicks into the message box and of terminal resizes. After each sequence: the app is alive and met no
unexpected error, the log passes `PRAGMA integrity_check`, and every message sent is logged
exactly once."""

from __future__ import annotations

import random
import sqlite3

import pytest
from textual import events
from textual.widgets import Input

from chatbot.app.chat_app import KEYS, ChatApp
from chatbot.app.screens import ConfirmScreen
from chatbot.session import open_session
from chatbot.settings import MAX_MESSAGE_CHARS
from chatbot.validation import clean_text

SEEDS = 8
PRESSES = 270  # per seed: more than 2,000 in all
NAVIGATION = [
    "enter",
    "enter",
    "enter",
    "tab",
    "shift+tab",
    "up",
    "down",
    "escape",
    "backspace",
    "left",
    "right",
    "home",
    "end",
    "pageup",
    "pagedown",
    "ctrl+c",
    "ctrl+u",
    "ctrl+k",
]
DIALOG_LETTERS = ["y", "n", "d", "r", "1", "2", "3", "a", "z"]
TEXTS = [
    "hello there",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "-0",
    "-0.0",
    "99999999999999999999999",
    "-1",
    "0",
    "0.5",
    "true",
    "banana",
    "none",
    "",
    "   ",
    "안녕하세요, 오늘 기분이 어때요?",
    "🙂🙃 emoji ZWJ 👩‍👩‍👧",
    "مرحبا بالعالم",
    "e\u0301\u0301\u0301",
    "\x00\x01\x1b[31mred\x1b[0m",
    "tab\there",
    "\u202eright-to-left override",
    "\ud800 lone surrogate",
    "x" * 3000,
    "zeb",
    "what is your name?",
    "do you like music?",
]
SIZES = [(80, 24), (120, 36), (60, 20), (100, 30)]


async def drive(app: ChatApp, pilot, rng: random.Random) -> tuple[list[str], int]:
    """One random sequence; returns the messages it sent and how many keys it pressed."""
    keys = [k.key for k in KEYS] + NAVIGATION + DIALOG_LETTERS
    sent, presses = [], 0
    while presses < PRESSES:
        roll = rng.random()
        typing = app.screen is app.screen_stack[0] and isinstance(app.focused, Input) and not app.focused.value
        if roll < 0.25 or (typing and roll < 0.6):
            app.post_message(events.Paste(rng.choice(TEXTS)))  # typed (pasted) into whatever has focus
            await pilot.pause()
        elif roll < 0.28:
            await pilot.resize_terminal(*rng.choice(SIZES))
        elif roll < 0.36 and app.screen is app.screen_stack[0]:
            await pilot.click("#prompt")  # as a person clicks back into the message box
        else:  # enter and escape more often than the rest: they send, apply and close
            key = "enter" if roll < 0.43 else "escape" if roll < 0.53 else rng.choice(keys)
            if key == "y" and isinstance(app.screen, ConfirmScreen):
                key = "n"  # deleting is tested on its own; here every message sent must stay logged
            if key == "enter" and app.screen is app.screen_stack[0] and isinstance(app.focused, Input):
                text = clean_text(app.focused.value)
                if text.strip() and len(text) <= MAX_MESSAGE_CHARS:
                    sent.append(text)
            await pilot.press(key)
            presses += 1
        assert app.is_running and not app.unexpected, app.unexpected
    return sent, presses


@pytest.mark.parametrize("seed", range(SEEDS))
async def test_random_keys_text_and_resizes_never_end_the_app_nor_lose_a_message(seed, overfit_dir, tmp_path):
    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "sample", None)
    app = ChatApp(session, errors=tmp_path / "errors.log")
    rng = random.Random(seed)
    async with app.run_test(size=(80, 24)) as pilot:
        sent, presses = await drive(app, pilot, rng)
        for _ in range(400):  # the replies still waiting their turn
            if not app.replying() and not app.waiting:
                break
            await pilot.pause(0.05)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.is_running and not app.unexpected, app.unexpected
    assert presses == PRESSES
    session.storage.close()
    conn = sqlite3.connect(tmp_path / "chat.db")
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    logged = [text for (text,) in conn.execute("select text from messages where role = 'user' order by id")]
    assert logged == sent
    assert not (tmp_path / "errors.log").exists()
