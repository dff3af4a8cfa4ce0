"""The real app under Textual's pilot, with a tiny real model and a temporary database."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file, save_file
from textual.widgets import Static

from chatbot.app.chat_app import ChatApp
from chatbot.app.widgets import MessageView
from chatbot.session import open_session
from chatbot.storage import Storage


@pytest.fixture()
def app(overfit_dir, tmp_path):
    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None)
    yield ChatApp(session, errors=tmp_path / "errors.log")
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
        assert all(
            1 <= len(step) <= 5 and step[0][1] >= step[-1][1] for step in inside["alternatives"]
        )  # ranked after the reply


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
        options.highlighted = [
            i for i in range(options.option_count) if options.get_option_at_index(i).id == str(first)
        ][0]
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
    Storage(tmp_path / "chat.db").close()  # a log from before: no first-run notice (its path differs per run)
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
        options.highlighted = [
            i for i in range(options.option_count) if options.get_option_at_index(i).id == str(other)
        ][0]
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await send(pilot, "hi there")
        assert [r["model"] for r in rows(app) if r["role"] == "bot"] == [str(overfit_dir), str(other)]


async def test_a_message_sent_before_the_model_has_loaded_is_logged_at_once_and_answered_once_it_has(
    overfit_dir, tmp_path, sample_pairs
):
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
        await asyncio.to_thread(
            lambda: [view.grow(text) for text in ("I", "I like", "I like tea")]
        )  # the decoding thread's calls
        assert await until(pilot, lambda: view.text == "I like tea")
        view.finish("I like tea.", None, "greedy")
        await asyncio.to_thread(view.grow, "I like tea and")
        await pilot.pause(0.1)
        assert view.text == "I like tea." and not view.pending


def test_the_warm_up_after_loading_does_not_depend_on_the_users_settings(overfit_dir, tmp_path):
    from chatbot.settings import SampleSettings

    session = open_session(
        overfit_dir, tmp_path / "chat.db", False, "cpu", "sample", SampleSettings(min_length=10, seed=1)
    )
    assert session.model is not None and session.load_error is None
    assert len(session.respond("hi there").reply.tokens) >= 10
    session.storage.close()


# --- faults a new user met: each test failed before its fix ---------------------------------


async def test_search_lists_every_hit_and_matches_word_prefixes(app):
    async with app.run_test() as pilot:
        await send(pilot, "do you like zebras?")
        await send(pilot, "zebras are striped")  # a second hit in the same conversation
        conversation = app.session.conversation_id
        await pilot.press("ctrl+n", "ctrl+f")
        await pilot.pause()
        app.screen.query_one("#query").value = "zeb"  # a prefix, as typed
        await pilot.pause()
        results = app.screen.query_one("#results")
        assert results.option_count == 2
        await pilot.press("enter", "down", "enter")  # to the results, the second hit, open it
        await pilot.pause()
        assert app.session.conversation_id == conversation and views(app)[0] == ("user", "do you like zebras?")


@pytest.mark.parametrize(
    "name, typed",
    [
        ("temperature", "nan"),
        ("temperature", "inf"),
        ("temperature", "1e309"),
        ("temperature", "1e30"),
        ("top_p", "1e-300x"),
        ("top_k", "2.5"),
        ("block_source_ngrams", "banana"),
        ("max_length", "1000000"),
    ],
)
async def test_settings_refuse_values_that_are_not_finite_in_range_or_of_their_type(app, name, typed):
    async with app.run_test(size=(120, 36)) as pilot:
        app.session.strategy = "sample"
        before = getattr(app.session.settings["sample"], name)
        await pilot.press("f2")
        box = app.screen.query_one(f"#set-{name}")
        box.value = typed
        box.focus()
        await pilot.press("enter")
        assert getattr(app.session.settings["sample"], name) == before and box.value == str(before)
        assert "refused" in str(app.screen.query_one("#settings-error").render())
        await pilot.press("escape")
        await send(pilot, "hi there")  # and the next reply is made as before
        assert rows(app)[-1]["role"] == "bot"


async def test_true_and_false_settings_take_only_true_or_false_words(app):
    async with app.run_test() as pilot:
        await pilot.press("f2")
        box = app.screen.query_one("#set-block_source_ngrams")
        for typed, expected in (("yes", True), ("banana", True), ("off", False)):
            box.value = typed
            box.focus()
            await pilot.press("enter")
            assert app.session.settings["greedy"].block_source_ngrams is expected


def test_no_key_collides_with_the_message_box_or_a_terminal_multiplexer():
    from textual.widgets import Input

    from chatbot.app.chat_app import KEYS

    box_keys = {key for b in Input.BINDINGS for key in b.key.split(",")}
    ours = [k.key for k in KEYS]
    assert len(ours) == len(set(ours))
    assert not set(ours) & box_keys, set(ours) & box_keys
    assert not set(ours) & {
        "ctrl+b",
        "ctrl+a",
        "ctrl+c",
        "ctrl+q",
        "ctrl+p",
        "ctrl+z",
        "ctrl+i",
        "ctrl+m",
        "ctrl+j",
        "ctrl+h",
    }


async def test_export_works_from_the_message_box_and_lands_beside_the_log_owner_only(app, tmp_path, monkeypatch):
    import os
    import stat

    monkeypatch.chdir(tmp_path)
    async with app.run_test() as pilot:
        await send(pilot, "hi there")
        assert app.focused is app.query_one("#prompt")
        await pilot.press("ctrl+s")
        await pilot.pause()
    exports = tmp_path / "chat-exports"
    files = sorted(exports.iterdir())
    assert [f.name for f in files] == ["conversation-1.json", "conversation-1.md"]
    assert stat.S_IMODE(os.stat(exports).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in files)
    assert not list(tmp_path.glob("conversation-*"))  # nothing in the working directory


async def test_delete_asks_first_and_says_what_goes(app):
    async with app.run_test() as pilot:
        await send(pilot, "hi there")
        await pilot.press("ctrl+y", "ctrl+o", "d")
        await pilot.pause()
        question = str(app.screen.query(Static).first().render())
        assert "2 messages" in question and "1 ratings or corrections" in question
        await pilot.press("n")
        await pilot.pause()
        assert len(rows(app)) == 2
        await pilot.press("ctrl+o", "d", "y")
        await pilot.pause()
        assert rows(app) == [] and rows(app, "feedback") == [] and views(app) == []


async def test_after_a_new_conversation_typing_goes_into_the_message_box(app):
    async with app.run_test() as pilot:
        await send(pilot, "hi there")
        app.query(MessageView).last().focus()  # a reply selected
        await pilot.press("ctrl+n")
        await pilot.press("h", "i")
        assert app.query_one("#prompt").value == "hi"


async def test_a_message_sent_while_a_reply_is_written_waits_its_turn(overfit_dir, tmp_path, sample_pairs):
    import asyncio

    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None, load=False)
    app = ChatApp(session)  # the first reply waits for the model: the test loads it
    first, second = sample_pairs[0], sample_pairs[1]
    async with app.run_test() as pilot:
        for pair in (first, second):
            app.query_one("#prompt").value = pair.source
            await pilot.press("enter")
            await pilot.pause()
            assert app.query_one("#prompt").value == ""  # taken: never glued to the next message
        assert [r["text"] for r in rows(app)] == [first.source, second.source]
        await asyncio.to_thread(session.load, "cpu", "fp32", 1)
        assert await until(pilot, lambda: len(rows(app)) == 4 and not app.replying())
        assert [(r["role"], r["text"]) for r in rows(app)] == [
            ("user", first.source),
            ("user", second.source),
            ("bot", first.reply),
            ("bot", second.reply),
        ]
        assert rows(app)[2]["reply_to"] == rows(app)[0]["id"] and rows(app)[3]["reply_to"] == rows(app)[1]["id"]
    session.storage.close()


async def test_the_newest_reply_and_its_caption_are_in_view_once_the_log_scrolls(app):
    async with app.run_test(size=(80, 24)) as pilot:
        for i in range(6):
            await send(pilot, f"hi there {i}")
        await pilot.pause(0.1)
        conversation = app.query_one("#conversation")
        assert conversation.max_scroll_y > 0 and conversation.scroll_y == conversation.max_scroll_y
        assert "ms" in app.query(MessageView).last().caption


async def test_the_footer_keys_fit_80_columns(app):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        keys = list(app.query("FooterKey"))
        shown = {k.key for k in ChatApp.BINDINGS if k.show}
        assert len(keys) >= len(shown) and all(k.region.right <= 80 and k.region.width > 0 for k in keys)


async def test_the_inside_view_is_readable_at_80_columns(app):
    from textual.widgets import DataTable

    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "hello there , how are you doing today my friend ?")
        await pilot.press("f3")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        weights = [c for c in table.columns.values() if str(c.key.value).startswith("s")]
        assert weights and all(c.get_render_width(table) >= 3 for c in weights)  # "42" or "·", never "0…"
        assert table.fixed_columns == 3  # the reply pieces stay in view while it scrolls sideways


async def test_the_palette_names_each_command_once(app):
    async with app.run_test():
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert len(titles) == len(set(titles))


async def test_switching_models_renames_the_header(app, overfit_dir, tmp_path):
    import shutil

    other = tmp_path / "other-model"
    shutil.copytree(overfit_dir, other)
    async with app.run_test() as pilot:
        app.switch_model(str(other))
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.sub_title == "other-model"


async def test_a_selected_user_message_is_not_rated_and_ratings_replace_each_other(app):
    async with app.run_test() as pilot:
        await send(pilot, "hi there")
        user, bot = list(app.query(MessageView))
        user.focus()
        await pilot.press("ctrl+y")
        assert rows(app, "feedback") == []
        bot.focus()
        await pilot.press("ctrl+y", "ctrl+g")
        assert [(f["kind"], f["rating"]) for f in rows(app, "feedback")] == [("rating", -1)]
        await pilot.press("ctrl+g")  # the same rating again takes it back
        assert rows(app, "feedback") == [] and bot.rating == 0


async def test_a_resumed_conversation_shows_its_ratings_and_corrections(app):
    async with app.run_test() as pilot:
        await send(pilot, "hi there")
        await pilot.press("ctrl+g", "ctrl+r")
        app.screen.query_one("#text").value = "hello! how are you?"
        await pilot.press("enter")
        conversation = app.session.conversation_id
        await pilot.press("ctrl+n")
        app.open_conversation(conversation)
        await pilot.pause()
        bot = app.query(MessageView).last()
        assert bot.rating == -1 and bot.correction == "hello! how are you?"
        assert "rated bad" in str(bot.render()) and "corrected to" in str(bot.render())


async def test_a_locked_log_refuses_a_rating_with_a_notice_and_the_app_goes_on(app):
    import sqlite3

    async with app.run_test() as pilot:
        await send(pilot, "hi there")
        app.session.storage.db.execute("pragma busy_timeout = 100")  # refuse soon
        blocker = sqlite3.connect(app.session.storage.path)
        blocker.execute("begin exclusive")
        await pilot.press("ctrl+y")
        await pilot.pause()
        blocker.rollback()
        assert app.is_running and not app.unexpected
        assert any("Not saved" in str(n.message) for n in app._notifications)
        await pilot.press("ctrl+y")
        assert [(f["kind"], f["rating"]) for f in rows(app, "feedback")] == [("rating", 1)]


async def test_an_unexpected_error_in_a_key_is_a_notice_and_the_app_goes_on(overfit_dir, tmp_path):
    class Faulty(ChatApp):
        def action_help(self):
            raise RuntimeError("a bug in a key's action")

    session = open_session(overfit_dir, tmp_path / "chat.db", False, "cpu", "greedy", None)
    app = Faulty(session, errors=tmp_path / "errors.log")
    async with app.run_test() as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert app.is_running and app.unexpected == ["RuntimeError: a bug in a key's action"]
        await send(pilot, "hi there")
        assert [r["role"] for r in rows(app)] == ["user", "bot"]
    assert "Traceback" in (tmp_path / "errors.log").read_text()
    session.storage.close()


def test_readme_key_table_lists_every_key_and_the_starting_strategy():
    from pathlib import Path

    from chatbot.app.chat_app import KEYS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("| key | does |") :]
    table = table[: table.index("\n\n")]
    for k in KEYS:
        assert k.key in table, k.key
    from chatbot.settings import DEFAULT_CANDIDATES, DEFAULT_STRATEGY

    assert DEFAULT_STRATEGY == "sample" and "starts in consensus sampling" in readme
    assert f"of {DEFAULT_CANDIDATES} replies drawn" in readme


async def test_an_unexpected_error_while_decoding_is_a_notice_and_the_next_message_is_answered(app):
    respond = app.session.respond
    calls = []

    def faulty(*args, **kwargs):  # fails once, as a bug in decoding would
        calls.append(args[0])
        if len(calls) == 1:
            raise RuntimeError("a bug while decoding")
        return respond(*args, **kwargs)

    app.session.respond = faulty
    async with app.run_test() as pilot:
        await send(pilot, "hi there")
        await pilot.pause()
        assert app.is_running and app.unexpected == ["RuntimeError: a bug while decoding"]
        assert "error" in app.query(MessageView).last().caption
        await send(pilot, "hi there")
        assert [r["role"] for r in rows(app)] == ["user", "user", "bot"]


async def test_a_message_sent_while_a_reply_is_written_reads_that_reply(context_dir, tmp_path, sample_pairs):
    """Two messages sent at once: the second waits its turn, and then reads the first exchange
    (message and reply) as the turns before it, as the person saw the conversation."""
    import json
    import sqlite3
    import threading

    session = open_session(context_dir, tmp_path / "chat.db", False, "cpu", "greedy", None)
    app = ChatApp(session, errors=tmp_path / "errors.log")
    first, second = sample_pairs[0].source, sample_pairs[1].source
    both_sent, respond = threading.Event(), session.respond

    def respond_once_both_are_sent(*args, **kwargs):  # the first reply takes as long as the sending does
        both_sent.wait(30)
        return respond(*args, **kwargs)

    session.respond = respond_once_both_are_sent
    async with app.run_test() as pilot:
        for text in (first, second):
            app.query_one("#prompt").value = text
            await pilot.press("enter")  # the second while the first reply is still being written
        both_sent.set()
        for _ in range(400):
            if not app.replying() and not app.waiting:
                break
            await pilot.pause(0.05)
        await app.workers.wait_for_complete()
        await pilot.pause()
    session.storage.close()
    rows = (
        sqlite3.connect(tmp_path / "chat.db").execute("select id, role, context from messages order by id").fetchall()
    )
    (user1, _, _), (user2, _, _), (bot1, _, _), (bot2, _, context2) = rows
    assert [r[1] for r in rows] == ["user", "user", "bot", "bot"]
    assert json.loads(context2) == [user1, bot1]  # not [user1]: the first reply came before it on screen
    assert [t.id for t in session.turns] == [user1, bot1, user2, bot2]
