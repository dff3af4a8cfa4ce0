"""The real app under Textual's pilot, with a tiny real model and a temporary database."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file, save_file

from chatbot.app.chat_app import ChatApp
from chatbot.app.widgets import MessageView
from chatbot.session import open_session


@pytest.fixture()
def app(overfit_dir, tmp_path):
    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None)
    yield ChatApp(session)
    session.storage.close()


async def send(pilot, text):
    pilot.app.query_one("#prompt").value = text
    await pilot.press("enter")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def rows(app, table="messages"):
    return list(app.session.storage.db[table].rows)


def views(app):
    return [(v.role, v.text) for v in app.query(MessageView)]


async def test_send_shows_the_reply_and_logs_both_rows(app, sample_pairs):
    async with app.run_test() as pilot:
        await send(pilot, sample_pairs[0].source)
        assert views(app) == [("user", sample_pairs[0].source), ("bot", sample_pairs[0].reply)]
        user, bot = rows(app)
        assert (user["role"], bot["role"]) == ("user", "bot")
        assert bot["text"] == sample_pairs[0].reply and bot["reply_to"] == user["id"]
        assert json.loads(bot["decoding"])["strategy"] == "greedy" and bot["latency_ms"] > 0
        assert json.loads(bot["decoding"])["precision"] == app.session.precision
        inside = json.loads(bot["attention"])
        assert len(inside["weights"]) == len(inside["reply_pieces"]) == len(inside["alternatives"])
        assert all(1 <= len(step) <= 5 and step[0][1] >= step[-1][1] for step in inside["alternatives"])  # ranked after the reply


async def test_empty_message_is_ignored(app):
    async with app.run_test() as pilot:
        await send(pilot, "   ")
        assert views(app) == [] and rows(app) == []


async def test_toggled_strategy_is_recorded_with_the_next_reply(app):
    async with app.run_test() as pilot:
        await pilot.press("ctrl+t")
        assert "beam" in str(app.query_one("#status").render())
        await send(pilot, "hi there")
        assert json.loads(rows(app)[-1]["decoding"])["strategy"] == "beam"
        await pilot.press("ctrl+t")
        await send(pilot, "hi there")
        assert json.loads(rows(app)[-1]["decoding"])["strategy"] == "sample"


async def test_settings_refuse_a_bad_value_and_keep_the_old_one(app):
    async with app.run_test() as pilot:
        await pilot.press("ctrl+t", "f2")
        box = app.screen.query_one("#set-beam_size")
        box.value = "0"
        box.focus()
        await pilot.press("enter")
        assert app.session.settings["beam"].beam_size == 5 and box.value == "5"
        box.value = "3"
        await pilot.press("enter")
        assert app.session.settings["beam"].beam_size == 3


async def test_rate_and_correct_store_feedback(app):
    async with app.run_test() as pilot:
        await send(pilot, "hi there")
        await pilot.press("ctrl+y")
        await pilot.press("ctrl+r")
        app.screen.query_one("#text").value = "hey! nice to meet you."
        await pilot.press("enter")
        await pilot.pause()
        feedback = rows(app, "feedback")
        bot_id = rows(app)[-1]["id"]
        assert [(f["kind"], f["message_id"]) for f in feedback] == [("rating", bot_id), ("correction", bot_id)]
        assert feedback[0]["rating"] == 1 and feedback[1]["text"] == "hey! nice to meet you."


async def test_resume_shows_the_history_and_search_finds_an_old_message(app):
    async with app.run_test() as pilot:
        await send(pilot, "tell me a joke")
        first = app.session.conversation_id
        await pilot.press("ctrl+n")
        assert views(app) == []
        await send(pilot, "what is your name?")
        await pilot.press("ctrl+o")
        await pilot.pause()
        options = app.screen.query_one("#conversation-list")
        options.highlighted = [i for i in range(options.option_count) if options.get_option_at_index(i).id == str(first)][0]
        await pilot.press("enter")
        await pilot.pause()
        assert views(app)[0] == ("user", "tell me a joke") and app.session.conversation_id == first
        await pilot.press("ctrl+n", "ctrl+f")
        await pilot.pause()
        app.screen.query_one("#query").value = "joke"
        await pilot.pause()
        results = app.screen.query_one("#results")
        assert results.option_count >= 1
        results.focus()
        results.highlighted = 0
        await pilot.press("enter")
        await pilot.pause()
        assert app.session.conversation_id == first


async def test_keys_work_while_a_reply_waits_and_escape_cancels_it(overfit_dir, tmp_path):
    import asyncio

    # the model loads only when the test says so: until then the reply waits for it
    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None, load=False)
    app = ChatApp(session)
    async with app.run_test() as pilot:
        app.query_one("#prompt").value = "hello"
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.reply_worker.is_running
        await pilot.press("f1")  # the help screen opens while the reply waits
        assert app.screen.__class__.__name__ == "HelpScreen"
        await pilot.press("escape")  # closes help
        await pilot.pause()
        assert app.reply_worker.is_running
        await pilot.press("escape")  # cancels the reply
        await asyncio.to_thread(session.load, "cpu", "fp32", 1)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert [r["role"] for r in rows(app)] == ["user"]  # the cancelled reply was never final: not logged
        assert "cancelled" in app.query(MessageView).last().caption
    session.storage.close()


async def test_huge_message_is_logged_whole(app):
    async with app.run_test() as pilot:
        text = "word " * 20_000
        await send(pilot, text)
        assert rows(app)[0]["text"] == text
        assert "last" in app.query(MessageView).last().caption  # the model read only the end, and says so


async def test_attention_screen_opens_for_the_last_reply(app):
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, "hi there")
        await pilot.press("f3")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "AttentionScreen"


async def test_no_log_writes_nothing(overfit_dir, tmp_path):
    session = open_session(overfit_dir, tmp_path / "chat.db", True, "cpu", "greedy", None)
    app = ChatApp(session)
    async with app.run_test() as pilot:
        await send(pilot, "hi there")
        assert len(views(app)) == 2
    assert not (tmp_path / "chat.db").exists()


def test_main_screen_snapshot(snap_compare, overfit_dir, tmp_path):
    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None)
    assert snap_compare(ChatApp(session), terminal_size=(80, 24))


async def test_model_picker_switches_and_replies_record_the_model(app, overfit_dir, tmp_path):
    import shutil

    other = tmp_path / "other-model"
    shutil.copytree(overfit_dir, other)
    app.session.storage.register_model(str(other))
    async with app.run_test() as pilot:
        await send(pilot, "hi there")
        await pilot.press("f5")
        await pilot.pause()
        options = app.screen.query_one("#model-list")
        options.highlighted = [i for i in range(options.option_count) if options.get_option_at_index(i).id == str(other)][0]
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await send(pilot, "hi there")
        assert [r["model"] for r in rows(app) if r["role"] == "bot"] == [str(overfit_dir), str(other)]


async def test_a_message_sent_before_the_model_has_loaded_is_logged_at_once_and_answered_once_it_has(overfit_dir, tmp_path, sample_pairs):
    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None, load=False)
    app = ChatApp(session)  # nothing loads the model until the test does
    pair = sample_pairs[3]
    async with app.run_test() as pilot:
        assert session.model is None and "loading the model" in str(app.query_one("#status").render())
        app.query_one("#prompt").value = pair.source
        await pilot.press("enter")
        await pilot.pause()
        assert [(r["role"], r["text"]) for r in rows(app)] == [("user", pair.source)]  # logged before any model exists
        session.load("cpu", "fp32", 1)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert views(app) == [("user", pair.source), ("bot", pair.reply)]
        assert [r["role"] for r in rows(app)] == ["user", "bot"]
    session.storage.close()


async def until(pilot, condition, seconds=60.0) -> bool:
    """Let the app run until `condition()` holds: the model loads in a thread of its own."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await pilot.pause(0.05)
    return condition()


async def test_the_app_loads_its_model_after_the_screen_is_up(overfit_dir, tmp_path):
    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None, load=False)
    app = ChatApp(session, load=("cpu", "auto", 1))
    async with app.run_test() as pilot:
        assert await until(pilot, lambda: "cpu int8" in str(app.query_one("#status").render()))
        assert session.model is not None
        assert [m["path"] for m in session.storage.models()] == [str(overfit_dir)]
    session.storage.close()


async def test_a_model_that_fails_to_load_closes_the_app_with_its_reason(overfit_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.model"):
        (broken / name).write_bytes((overfit_dir / name).read_bytes())
    weights = load_file(overfit_dir / "model.safetensors")
    weights["bridge.h.weight"][0, 0] = float("nan")  # a diverged run: found only once the weights are read
    save_file(weights, broken / "model.safetensors")
    session = open_session(broken, tmp_path / "chat.db", False, "cpu", "greedy", None, load=False)
    app = ChatApp(session, load=("cpu", "fp32", 1))
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 1 and "NaN" in session.load_error
    session.storage.close()


async def test_a_growing_reply_shows_its_latest_text_and_a_late_update_never_overwrites_the_final_one(app, monkeypatch):
    import asyncio

    from chatbot.app import widgets

    monkeypatch.setattr(widgets, "STREAM_INTERVAL", 0.0)  # redraw whenever the screen is free
    async with app.run_test() as pilot:
        view = app.add_message(MessageView("bot", "", pending=True))
        await asyncio.to_thread(lambda: [view.grow(text) for text in ("I", "I like", "I like tea")])  # the decoding thread's calls
        assert await until(pilot, lambda: view.text == "I like tea")
        view.finish("I like tea.", None, "greedy")
        await asyncio.to_thread(view.grow, "I like tea and")
        await pilot.pause(0.1)
        assert view.text == "I like tea." and not view.pending


def test_the_warm_up_after_loading_does_not_depend_on_the_users_settings(overfit_dir, tmp_path):
    from chatbot.settings import SampleSettings

    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "sample", SampleSettings(min_length=10, seed=1))
    assert session.model is not None and session.load_error is None
    assert len(session.respond("hi there").reply.tokens) >= 10
    session.storage.close()
