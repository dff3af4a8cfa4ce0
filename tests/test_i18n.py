"""The interface in English and Korean from one catalogue per language."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from chatbot.i18n import LOCALES, catalogue, language_from_environment, set_language, t

ROOT = Path(__file__).resolve().parent.parent


def keys_used() -> set[str]:
    """Every literal key the code passes to t(), and the keys built from the chat's KEYS table."""
    from chatbot.app.chat_app import KEYS, OTHER_KEYS

    used = set()
    for path in (ROOT / "chatbot").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = isinstance(node, ast.Call) and getattr(node.func, "id", None) == "t" and node.args
            if call and isinstance(node.args[0], ast.Constant):
                used.add(node.args[0].value)
    for k in KEYS:
        used |= {f"key.{k.name}.title", f"key.{k.name}.does"} | ({f"key.{k.name}.footer"} if k.footer else set())
    return used | {does for _, does in OTHER_KEYS}


def test_both_catalogues_hold_the_same_keys_and_every_key_the_code_uses():
    en, ko = (json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8")) for lang in ("en", "ko"))
    assert set(en) == set(ko)
    assert keys_used() <= set(en), keys_used() - set(en)
    for key in en:  # the same places to fill in
        assert set(re.findall(r"{(\w+)}", en[key])) == set(re.findall(r"{(\w+)}", ko[key])), key
    assert all(re.search("[가-힣]", ko[k]) for k in ko if re.search("[a-z]{4}", en[k]) and k.startswith("notice."))


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"LANG": "ko_KR.UTF-8"}, "ko"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({}, "en"),
        ({"LC_ALL": "ko_KR", "LANG": "C"}, "ko"),
    ],
)
def test_the_language_follows_the_locale(environ, expected):
    assert language_from_environment(environ) == expected


def test_the_command_line_speaks_the_language_asked_for(capsys):
    from chatbot.cli import main

    assert main(["reply", "--lang", "ko", "--model", "/no/such/model", "hi"]) == 1
    assert capsys.readouterr().err.startswith("chatbot: 오류:")
    set_language("ko")
    assert t("notice.kept") == catalogue("ko")["notice.kept"]


async def test_the_chat_in_korean_fits_80_columns_and_says_everything_in_korean(overfit_dir, tmp_path):
    from chatbot.app.chat_app import ChatApp
    from chatbot.session import open_session

    set_language("ko")
    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None)
    app = ChatApp(session, errors=tmp_path / "errors.log")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.query_one("#prompt").placeholder == catalogue("ko")["prompt.placeholder"]
        keys = list(app.query("FooterKey"))
        assert keys and all(k.region.right <= 80 for k in keys)
        assert {k.description for k in keys} >= {
            catalogue("ko")["key.help.footer"],
            catalogue("ko")["key.history.footer"],
        }
        for key in ("f1", "escape", "f2", "escape", "ctrl+o", "escape", "ctrl+f", "escape"):
            await pilot.press(key)
            await pilot.pause()
        assert not app.unexpected
        app.query_one("#prompt").value = "hi there"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "점수" in app.query("MessageView").last().caption
    session.storage.close()


def test_the_chat_in_korean_snapshot(snap_compare, overfit_dir, tmp_path):
    from chatbot.app.chat_app import ChatApp
    from chatbot.session import open_session

    set_language("ko")
    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None)
    assert snap_compare(ChatApp(session), terminal_size=(80, 24), press=["f1"])
