"""The interface in English and Korean from one catalogue per language."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from chatbot.i18n import LOCALES, catalogue, language_from_environment, set_language, t
from chatbot.storage import Storage

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


def messages_used() -> dict[str, str]:
    """Every English message the code passes to tr(), with the file it is in, and the templates
    argparse's own messages are read back into."""
    from chatbot.cli import ARGPARSE_MESSAGES

    used = {template: "chatbot/cli.py" for _, template in ARGPARSE_MESSAGES}
    for package in ("chatbot", "training", "corpora"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "tr" and node.args:
                    if getattr(node.args[0], "id", None) == "template":
                        continue  # argparse's, above
                    assert isinstance(node.args[0], ast.Constant), f"{path}:{node.lineno}: tr() of a computed text"
                    used[node.args[0].value] = str(path)
    return used


def test_every_message_in_the_code_has_its_korean_text_and_none_is_left_over():
    ko = json.loads((LOCALES / "messages.ko.json").read_text(encoding="utf-8"))
    used = messages_used()
    assert len(used) > 100
    assert set(used) <= set(ko), {m: used[m] for m in set(used) - set(ko)}
    assert set(ko) <= set(used) | {"interrupted"}, set(ko) - set(used)
    for english, korean in ko.items():  # the same places to fill in, and Korean words around them
        assert set(re.findall(r"{(\w+)", english)) == set(re.findall(r"{(\w+)", korean)), english
        assert re.search("[가-힣]", korean) or not re.search("[a-z]{3}", re.sub(r"{[^}]*}", "", english)), english


def test_the_command_line_speaks_the_language_asked_for(capsys, tmp_path, monkeypatch):
    from rich.cells import cell_len

    from chatbot.cli import main

    monkeypatch.setenv("COLUMNS", "80")

    assert main(["reply", "--lang", "ko", "--model", "/no/such/model", "hi"]) == 1
    assert capsys.readouterr().err == "chatbot: 오류: /no/such/model: 그런 모델 디렉터리가 없습니다\n"
    (tmp_path / "pairs.tsv").write_text("hi there\n", encoding="utf-8")
    argv = ["train", "--corpus", str(tmp_path / "pairs.tsv"), "--out", str(tmp_path / "m"), "--lang", "ko"]
    assert main(argv) == 1
    assert "1: '메시지<TAB>답장'이어야 하는데 탭이 없습니다" in capsys.readouterr().err
    for bad, said in (
        (["--temperature", "nan"], "--temperature: 유한한 수여야 합니다 (nan이(가) 아니라)"),
        (["--beam-size", "1e309"], "--beam-size: 정수여야 합니다 ('1e309'이(가) 아니라)"),
        (["--strategy", "nope"], "--strategy: 잘못된 선택 'nope'"),
    ):
        with pytest.raises(SystemExit) as exit:
            main(["reply", "--lang", "ko", *bad, "hi"])
        assert exit.value.code == 2 and said in capsys.readouterr().err, bad
    with pytest.raises(SystemExit):
        main(["reply", "--lang", "ko", "--help"])
    shown = capsys.readouterr().out
    assert shown.startswith("사용법: chatbot reply") and "답장의 최대 토큰 수 (기본 40); 1에서 200" in shown
    assert max(cell_len(line) for line in shown.splitlines()) <= 80  # a Hangul syllable takes two columns
    with pytest.raises(SystemExit):
        main(["reply", "--temperature", "nan", "hi"])  # English unless asked
    assert capsys.readouterr().err == "chatbot reply: error: --temperature: must be a finite number, not nan\n"
    set_language("ko")
    assert t("notice.kept") == catalogue("ko")["notice.kept"]


async def test_the_chat_in_korean_fits_80_columns_and_says_everything_in_korean(overfit_dir, tmp_path):
    from chatbot.app.chat_app import ChatApp
    from chatbot.session import open_session

    set_language("ko")
    Storage(tmp_path / "chat.db").close()  # a log from before: no first-run notice (its path differs per run)
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
    Storage(tmp_path / "chat.db").close()  # a log from before: no first-run notice (its path differs per run)
    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None)
    assert snap_compare(ChatApp(session), terminal_size=(80, 24), press=["f1"])
