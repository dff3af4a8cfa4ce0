"""The chat screen: conversation, message box, status line. Replies are decoded in a worker
thread and stream into the conversation; the session logs them. The screen opens before torch
and the model have loaded (a thread loads them): a message sent meanwhile is logged at once and
answered when the model is ready. Messages sent while a reply is being written wait their turn.

No key press ends the app: an unexpected error in an action, a screen or a worker becomes a
one-line notice, with its traceback appended to an error file, and the chat goes on."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Input, Static
from textual.worker import Worker, WorkerState, get_current_worker

from chatbot.app.guard import guarded, guarded_call
from chatbot.app.screens import (
    AttentionScreen,
    CompareScreen,
    ConfirmScreen,
    ConversationsScreen,
    HelpScreen,
    ModelsScreen,
    SearchScreen,
    SettingsScreen,
    TextPrompt,
    WalkThroughScreen,
)
from chatbot.app.widgets import MessageView, PromptInput, printable
from chatbot.errors import ChatbotError
from chatbot.i18n import t
from chatbot.session import STRATEGY_ORDER, Cancelled, Session, logged_decoding
from chatbot.settings import MAX_MESSAGE_CHARS, settings_from
from chatbot.validation import clean_text


@dataclass(frozen=True)
class Key:
    """One key of the chat: its binding, and its name in the message catalogue (`chatbot.i18n`),
    which holds its title in the command palette, what the help screen says it does and, for
    the keys the footer shows, its label there."""

    key: str
    action: str
    name: str  # key.<name>.title / .does / .footer in chatbot/locales/*.json
    footer: bool = False  # shown in the footer, which holds 80 columns

    @property
    def title(self) -> str:
        return t(f"key.{self.name}.title")

    @property
    def does(self) -> str:
        return t(f"key.{self.name}.does")


# Chosen to collide with neither the message box's own keys (ctrl+a/e/d/k/u/w/x/c/v, arrows) nor
# the prefixes of tmux (ctrl+b) and GNU screen (ctrl+a).
KEYS = [
    Key("f1", "help", "help", footer=True),
    Key("ctrl+t", "cycle_strategy", "strategy", footer=True),
    Key("f2", "settings", "settings", footer=True),
    Key("f3", "inside", "inside", footer=True),
    Key("f4", "compare", "compare"),
    Key("f6", "walk_through", "walk"),
    Key("ctrl+y", "rate(1)", "good", footer=True),
    Key("ctrl+g", "rate(-1)", "bad", footer=True),
    Key("ctrl+r", "correct", "correct", footer=True),
    Key("ctrl+n", "new_conversation", "new"),
    Key("ctrl+o", "conversations", "history", footer=True),
    Key("ctrl+f", "search", "search"),
    Key("ctrl+s", "export", "export"),
    Key("f5", "models", "models"),
    Key("ctrl+l", "toggle_theme", "theme"),
    Key("escape", "cancel", "cancel"),
]
OTHER_KEYS = [  # keys of Textual and of the message box, for the help screen
    ("enter", "key.enter.does"),
    ("up / down", "key.updown.does"),
    ("tab", "key.tab.does"),
    ("ctrl+p", "key.palette.does"),
    ("ctrl+q", "key.quit.does"),
]
MODAL_ACTIONS = {"toggle_theme", "quit"}  # what still works while a dialog is open
ERROR_BURST = 20  # unexpected errors within a second: the app cannot go on


def reply_caption(decoding: dict, ms: float, score: float) -> str:
    """The line under a reply: its strategy and time, then what chose it: the summed
    log-probability, or for consensus sampling how well the other replies drawn agree with it."""
    if decoding.get("agreement") is not None:
        return t(
            "caption.consensus",
            strategy=decoding["strategy"],
            ms=f"{ms:.0f}",
            agreement=f"{decoding['agreement']:.2f}",
            candidates=decoding.get("candidates", "?"),
        )
    return t("caption.reply", strategy=decoding["strategy"], ms=f"{ms:.0f}", score=f"{score:.2f}")


def error_file() -> Path:
    """Where tracebacks of unexpected errors go: the platform's user log directory."""
    from platformdirs import user_log_dir

    return Path(user_log_dir("chatbot")) / "chat-errors.log"


class ChatApp(App):
    CSS_PATH = Path(__file__).parent / "chat.tcss"  # absolute: a subclass elsewhere finds it too
    TITLE = "chatbot"
    BINDINGS = []  # the chat's keys are bound per app, in the interface's language (`__init__`)

    def __init__(self, session: Session, load: tuple[str, str, int | None] | None = None, errors: Path | None = None):
        """`load` (device, precision, threads): the session's model is still to be loaded.
        `errors`: the file that gets the tracebacks of unexpected errors (default `error_file()`)."""
        super().__init__()
        for k in KEYS:
            self.bind(k.key, k.action, description=t(f"key.{k.name}.footer") if k.footer else k.title, show=k.footer)
        self.session = session
        self.load = load
        self.errors = errors
        self.last_latency = ""
        self.reply_worker: Worker | None = None
        self.reply_view: MessageView | None = None
        self.waiting: deque[tuple[str, int | None, int | None, MessageView]] = (
            deque()
        )  # messages whose reply waits its turn
        self.unexpected: list[str] = []  # one line per unexpected error, as noticed
        self.error_times: deque[float] = deque(maxlen=ERROR_BURST)
        self.fatal: str | None = None  # set when an unexpected error stopped the app
        self.loader: threading.Thread | None = None  # loads torch and the model behind the screen

    def notify(self, message: str, *, markup: bool = False, **kwargs) -> None:
        """Notices quote titles, paths and errors: shown as they are, never read as markup."""
        super().notify(message, markup=markup, **kwargs)

    # --- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield VerticalScroll(id="conversation")
        yield PromptInput(placeholder=t("prompt.placeholder"), id="prompt")
        yield Static(id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = Path(self.session.model_path).name
        self.query_one("#prompt").focus()
        self.update_status()
        if self.session.storage is None:
            self.notify(t("notice.no_log"))
        elif self.session.storage.notes:  # a new log, or one mended on opening: said first
            self.notify(" ".join(self.session.storage.notes), timeout=10)
        if self.load is not None:  # once the screen is drawn: importing torch holds the interpreter for seconds
            self.call_after_refresh(self.start_loading)

    def start_loading(self) -> None:
        """Load torch and the model in a daemon thread, not a worker: quitting meanwhile closes the
        screen at once (`chatbot chat` then waits for the load before the process exits)."""
        self.loader = threading.Thread(target=self.load_model, args=self.load, name="load-model", daemon=True)
        self.loader.start()

    def load_model(self, device: str, precision: str, threads: int | None) -> None:
        interval = sys.getswitchinterval()
        sys.setswitchinterval(0.1)  # longer turns for this thread: the screen needs little while it loads
        try:
            self.session.load(device, precision, threads)
            loaded = True
        except Exception:  # the session keeps the reason; `chatbot chat` prints it after the screen closes
            loaded = False
        finally:
            sys.setswitchinterval(interval)
        self.post_message(self.Loaded(loaded))  # never waits: the app may have closed meanwhile

    class Loaded(Message):
        """The model has loaded, or failed to (`ok` False)."""

        def __init__(self, ok: bool):
            super().__init__()
            self.ok = ok

    def on_chat_app_loaded(self, message: Loaded) -> None:
        if message.ok:
            self.update_status()
        else:
            self.exit(None, 1)

    def update_status(self) -> None:
        s = self.session
        where = f"{s.device.type} {s.precision}" if s.device is not None else t("status.loading")
        parts = [Path(s.model_path).name, where, s.describe()]
        if self.last_latency:
            parts.append(t("status.last", latency=self.last_latency))
        if s.storage is None:
            parts.append(t("status.not_logging"))
        self.query_one("#status", Static).update(" · ".join(parts))

    def add_message(self, view: MessageView) -> MessageView:
        conversation = self.query_one("#conversation", VerticalScroll)
        conversation.mount(view)
        conversation.scroll_end(animate=False)
        return view

    def scroll_to_end(self) -> None:
        """After a reply's final text and caption are in: they may make it taller than before."""
        self.call_after_refresh(self.query_one("#conversation", VerticalScroll).scroll_end, animate=False)

    # --- unexpected errors ----------------------------------------------------------------------

    def report(self, error: BaseException) -> None:
        """An unexpected error (a bug) in something a key or a message set off: its traceback goes
        to the error file, the person gets one line, and the chat goes on. A burst of them (one
        in every frame, say) stops the app instead (`stop_on`). A ChatbotError is no bug: it
        says what went wrong (the log locked by another program, say) and is only shown."""
        if isinstance(error, ChatbotError):
            self.notify(str(error), severity="error", timeout=10)
            return
        path = self.record(error)
        line = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}" if str(error) else type(error).__name__
        self.unexpected.append(line)
        now = time.monotonic()
        self.error_times.append(now)
        if len(self.error_times) == ERROR_BURST and now - self.error_times[0] < 1.0:
            self.stop_on(line, path)
            return
        self.notify(t("notice.unexpected", line=line, path=path), severity="error", timeout=10)

    def stop_on(self, line: str, path: Path) -> None:
        self.fatal = f"the chat stopped on an unexpected error ({line}); its traceback is in {path}"
        self.exit(None, 1)

    def _handle_exception(self, error: Exception) -> None:
        """Textual calls this with an exception that escaped everything `guarded` covers (its own
        machinery, rendering): the app cannot go on. Exit with status 1 and one line naming the
        error file, which holds the traceback, rather than a screenful of it."""
        path = self.record(error)
        line = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}" if str(error) else type(error).__name__
        self.unexpected.append(line)
        self._return_code = 1
        if self._exception is None:  # so that a test run under Textual's pilot sees it too
            self._exception = error
            self._exception_event.set()
        self.stop_on(line, path)

    def record(self, error: BaseException) -> Path:
        path = self.errors or error_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with open(fd, "a", encoding="utf-8") as f:
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                f.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))
        except OSError:
            pass
        return path

    async def run_action(self, action, default_namespace=None) -> bool:
        """Every key's action (the chat's and its dialogs'), with its unexpected errors reported."""
        try:
            return await super().run_action(action, default_namespace)
        except Exception as error:  # noqa: BLE001 (reported, not hidden)
            self.report(error)
            return True

    def push_screen(self, screen, callback=None, wait_for_dismiss=False):
        """Dialogs, with the code that acts on their answer guarded like a key's action."""
        return super().push_screen(screen, guarded_call(self, callback) if callback else None, wait_for_dismiss)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """While a dialog is open, the chat's own keys wait (a second dialog on top of the first,
        or a conversation cleared behind it, would only confuse)."""
        ours = any(k.action.split("(")[0] == action for k in KEYS)
        return not (isinstance(self.screen, ModalScreen) and ours and action not in MODAL_ACTIONS)

    # --- sending ------------------------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    @guarded
    def send(self, event: Input.Submitted) -> None:
        """Log the message, show it, and start decoding its reply (or queue it behind the reply
        being written). The box is emptied only once the message is logged."""
        text = clean_text(event.value)
        if not text.strip():
            return
        if len(text) > MAX_MESSAGE_CHARS:
            self.notify(t("notice.too_long", limit=f"{MAX_MESSAGE_CHARS:,}"), severity="error")
            return
        try:
            user_id = self.session.log_user(text)
        except ChatbotError as err:
            self.notify(t("notice.not_sent", error=err), severity="error", timeout=10)
            return
        prompt = self.query_one("#prompt", PromptInput)
        prompt.remember(text)
        prompt.value = ""
        self.add_message(MessageView("user", text, message_id=user_id))
        busy = self.replying()
        bot = self.add_message(MessageView("bot", "", pending=True, caption=t("caption.waits") if busy else ""))
        self.waiting.append((text, user_id, self.session.conversation_id, bot))
        self.next_reply()

    def replying(self) -> bool:
        return self.reply_worker is not None and not self.reply_worker.is_finished

    def next_reply(self) -> None:
        if self.waiting and not self.replying():
            text, user_id, conversation_id, view = self.waiting.popleft()
            view.caption = ""
            self.reply_view = view
            self.reply_worker = self.decode_reply(text, user_id, conversation_id, view)

    @guarded
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker's unexpected error is reported here (workers run with exit_on_error off);
        a finished reply lets the next waiting message have its turn."""
        if event.state == WorkerState.ERROR:
            self.report(event.worker.error)
            if event.worker is self.reply_worker and self.reply_view is not None:
                self.finish_reply(self.reply_view, self.reply_view.text, None, t("caption.error"))
        if event.worker is self.reply_worker and event.state in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            self.next_reply()

    @work(thread=True, group="reply", exit_on_error=False)
    def decode_reply(self, text: str, user_id: int | None, conversation_id: int | None, view: MessageView) -> None:
        worker = get_current_worker()
        try:
            exchange = self.session.respond(
                text,
                on_text=view.grow,
                cancelled=lambda: worker.is_cancelled,
                user_id=user_id,
                conversation_id=conversation_id,
            )
        except Cancelled:
            self.call_from_thread(self.finish_reply, view, view.text, None, t("caption.cancelled"))
            return
        except ChatbotError as err:
            self.call_from_thread(self.finish_reply, view, "", None, t("caption.not_logged", error=err))
            return
        r = exchange.reply
        decoding = logged_decoding(r, self.session.precision)
        caption = reply_caption(decoding, r.seconds * 1000, r.score)
        if r.truncated:
            caption += t("caption.truncated", limit=self.session.model.cfg.max_source_tokens)
        self.last_latency = f"{r.seconds * 1000:.0f} ms"
        self.call_from_thread(self.finish_reply, view, r.text, exchange.bot_id, caption, exchange.inside, decoding)
        self.call_from_thread(self.update_status)

    def finish_reply(
        self,
        view: MessageView,
        text: str,
        message_id: int | None,
        caption: str,
        inside: dict | None = None,
        decoding: dict | None = None,
    ) -> None:
        view.finish(text, message_id, caption, inside, decoding)
        if view.is_attached:
            self.scroll_to_end()

    def action_cancel(self) -> None:
        if self.replying():
            self.reply_worker.cancel()

    # --- decoding toggle ----------------------------------------------------------------------

    def action_cycle_strategy(self) -> None:
        strategy = self.session.cycle_strategy()
        self.update_status()
        self.notify(t("notice.decoding", strategy=strategy))

    def action_settings(self) -> None:
        values = dict(asdict(self.session.current))

        def apply(strategy: str, name: str, raw: str) -> str | None:
            try:
                self.session.update_setting(strategy, name, raw)
            except ChatbotError as err:
                return str(err)
            self.update_status()
            return None

        self.push_screen(SettingsScreen(self.session.strategy, values, apply))

    def action_compare(self) -> None:
        users = [v for v in self.query(MessageView) if v.role == "user"]
        if not users:
            self.notify(t("notice.send_first"))
            return
        self.notify(t("notice.comparing"))
        self.compare_worker(users[-1].text, users[-1].message_id)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def compare_worker(self, text: str, user_id: int | None) -> None:
        replies = []
        try:
            for name in STRATEGY_ORDER:
                settings = self.session.settings[name]
                r = self.session.respond(text, settings=settings, inspect=False, user_id=user_id, log=False).reply
                replies.append((self.session.describe_settings(settings), r.text, settings))
        except ChatbotError as err:
            self.call_from_thread(self.notify, t("notice.cannot_compare", error=err), severity="error")
            return
        self.call_from_thread(self.show_comparison, text, replies)

    def show_comparison(self, text: str, replies: list) -> None:
        def picked(index: int | None) -> None:
            bots = [v for v in self.query(MessageView) if v.role == "bot" and v.message_id]
            if index is None or not self.session.storage or not bots:
                return
            label, chosen, settings = replies[index]
            if self.guard(lambda: self.session.storage.prefer(bots[-1].message_id, chosen, settings.to_dict())):
                self.notify(t("notice.preference", label=label))

        self.push_screen(CompareScreen(text, [(label, reply) for label, reply, _ in replies]), picked)

    # --- feedback -----------------------------------------------------------------------------

    def guard(self, write) -> bool:
        """Run a write to the log; a refusal (the log locked by another program, say) is a notice."""
        try:
            write()
            return True
        except ChatbotError as err:
            self.notify(t("notice.not_saved", error=err), severity="error", timeout=10)
            return False

    def selected_reply(self, doing: str) -> MessageView | None:
        """The focused reply, else the last logged one; None (with a notice saying why) if the
        focus is on one of your own messages or there is no logged reply."""
        focused = self.focused
        if isinstance(focused, MessageView) and focused.role == "user":
            self.notify(t("notice.own_message", doing=t(f"doing.{doing}")), severity="warning")
            return None
        if isinstance(focused, MessageView) and focused.message_id:
            return focused
        bots = [v for v in self.query(MessageView) if v.role == "bot" and v.message_id]
        if not bots or self.session.storage is None:
            self.notify(t("notice.no_reply_to", doing=t(f"doing.{doing}")))
            return None
        return bots[-1]

    def action_rate(self, rating: int) -> None:
        view = self.selected_reply("rate")
        if view is None:
            return
        new = 0 if view.rating == rating else rating  # the same key again takes the rating back
        if self.guard(lambda: self.session.storage.rate(view.message_id, new)):
            view.rating = new
            view.refresh_text()
            self.notify(t({1: "notice.rated_good", -1: "notice.rated_bad", 0: "notice.rating_removed"}[new]))

    def action_correct(self) -> None:
        view = self.selected_reply("correct")
        if view is None:
            return

        def save(text: str | None) -> None:
            text = clean_text(text or "")
            if text.strip() and self.guard(lambda: self.session.storage.correct(view.message_id, text)):
                view.correction = text
                view.refresh_text()
                self.notify(t("notice.correction_saved"))

        self.push_screen(TextPrompt(t("prompt.correction"), view.correction or view.text), save)

    def action_inside(self) -> None:
        focused = self.focused
        view = focused if isinstance(focused, MessageView) and focused.role == "bot" else None
        view = view or next(
            (v for v in reversed(list(self.query(MessageView))) if v.role == "bot" and not v.pending), None
        )
        if view is None:
            self.notify(t("notice.no_reply_inside"))
            return
        inside = view.inside
        if inside is None and view.message_id and self.session.storage:
            try:
                row = self.session.storage.message(view.message_id)
            except ChatbotError as err:
                self.notify(str(err), severity="error")
                return
            inside = json.loads(row["attention"]) if row and row.get("attention") else None
        if inside is None:
            self.notify(t("notice.no_attention"))
            return
        self.push_screen(AttentionScreen(inside, view.caption))

    def action_walk_through(self) -> None:
        """The selected exchange (default: the last), step by step, through the reference model's
        own modules; teacher forcing on the reply shown, or on its correction."""
        focused = self.focused
        views = list(self.query(MessageView))
        bot = focused if isinstance(focused, MessageView) and focused.role == "bot" else None
        bot = bot or next((v for v in reversed(views) if v.role == "bot" and not v.pending), None)
        if bot is None or self.session.model is None:
            self.notify(t("notice.no_reply_walk") if bot is None else t("notice.still_loading"))
            return
        user = next((v for v in reversed(views[: views.index(bot)]) if v.role == "user"), None)
        if user is None:
            self.notify(t("notice.no_message_before"))
            return
        self.notify(t("notice.walking"))
        self.walk_worker(user.text, user.message_id, bot.correction or bot.text, bot.decoding)

    @work(thread=True, exclusive=True, group="walk", exit_on_error=False)
    def walk_worker(
        self,
        message: str,
        user_id: int | None,
        reply_text: str,
        decoding: dict | None,
        forced: dict | None = None,
        page: int = 0,
    ) -> None:
        """The walk-through screen, with the settings the reply was decoded with (`decoding`, as
        logged: a sampled reply's seed draws its candidates again); `forced` {step: piece}: what if
        the model had written that piece there (opened at `page`, the step's own)."""
        from chatbot.explain import walk_through
        from chatbot.explain_pages import pages, step_pages

        engine, tokenizer, _ = self.session.replier_for(message)
        turns = self.session.context_of(message, user_id, engine)  # as the reply read them
        settings = self.session.current
        with contextlib.suppress(ChatbotError, TypeError):  # a reply logged by another version: today's settings
            settings = settings_from(**decoding) if decoding else settings
        walk = walk_through(
            engine, tokenizer, message, settings, [turn.text for turn in turns], [turn.role == "bot" for turn in turns],
            reply_text=reply_text, forced=forced,
        )  # fmt: skip
        heading = t("walk.heading", message=printable(message)[:60])
        if forced:
            heading += t("walk.what_if_heading", reply=printable(walk["reply"])[:40])

        def what_if(step: int, piece: str, at: int) -> None:
            self.notify(t("notice.walking"))
            self.walk_worker(message, user_id, reply_text, decoding, {**(forced or {}), step: piece}, at)

        screen = WalkThroughScreen(pages(walk), heading, step_pages(walk), what_if, page)
        self.call_from_thread(self.push_screen, screen)

    # --- conversations ------------------------------------------------------------------------

    def action_new_conversation(self) -> None:
        self.clear_conversation()
        self.notify(t("notice.new_conversation"))

    def clear_conversation(self) -> None:
        """An empty screen for a new conversation; replies still being written go on and are
        logged to their own conversation."""
        self.session.new_conversation()
        self.query_one("#conversation").remove_children()
        self.query_one("#prompt").focus()

    def open_conversation(self, conversation_id: int) -> None:
        storage = self.session.storage
        try:
            marks = storage.marks(conversation_id)
            self.clear_conversation()
            messages = self.session.resume(conversation_id)
        except ChatbotError as err:
            self.notify(t("notice.cannot_open", error=err), severity="error")
            return
        for row in messages:
            caption, decoding = "", None
            if row["role"] == "bot" and row["decoding"]:
                decoding = json.loads(row["decoding"])
                caption = reply_caption(decoding, row["latency_ms"] or 0, row["score"] or 0)
            view = MessageView(row["role"], row["text"], message_id=row["id"], caption=caption)
            view.decoding = decoding
            view.rating = marks.get(row["id"], {}).get("rating") or 0
            view.correction = marks.get(row["id"], {}).get("correction")
            view.refresh_text()
            self.add_message(view)

    def action_conversations(self) -> None:
        storage = self.session.storage
        if storage is None:
            self.notify(t("notice.no_history"))
            return
        try:
            conversations = storage.conversations()
        except ChatbotError as err:
            self.notify(str(err), severity="error")
            return
        by_id = {c["id"]: c for c in conversations}

        def chosen(choice) -> None:
            if not choice:
                return
            action, conversation_id = choice
            if action == "open":
                self.open_conversation(conversation_id)
            elif action == "delete":
                c = by_id[conversation_id]
                feedback = t("confirm.feedback", count=c["feedback"]) if c["feedback"] else ""
                question = t("confirm.delete", title=printable(c["title"]), messages=c["messages"], feedback=feedback)
                self.push_screen(ConfirmScreen(question), partial(self.delete_conversation, conversation_id))
            elif action == "rename":

                def rename(title: str | None) -> None:
                    title = clean_text(title or "")
                    if title.strip() and self.guard(lambda: storage.rename_conversation(conversation_id, title)):
                        self.notify(t("notice.renamed", title=title))

                self.push_screen(TextPrompt(t("prompt.title"), by_id[conversation_id]["title"]), rename)

        self.push_screen(ConversationsScreen(conversations), chosen)

    def delete_conversation(self, conversation_id: int, yes: bool | None) -> None:
        if not yes:
            self.notify(t("notice.kept"))
            return
        if self.guard(lambda: self.session.storage.delete_conversation(conversation_id)):
            if self.session.conversation_id == conversation_id:
                self.clear_conversation()
            self.notify(t("notice.deleted"))

    def action_search(self) -> None:
        storage = self.session.storage
        if storage is None:
            self.notify(t("notice.nothing_to_search"))
            return

        def chosen(conversation_id: int | None) -> None:
            if conversation_id is not None:
                self.open_conversation(conversation_id)

        self.push_screen(SearchScreen(storage.search), chosen)

    def action_export(self) -> None:
        storage, conversation_id = self.session.storage, self.session.conversation_id
        if storage is None or conversation_id is None:
            self.notify(t("notice.nothing_to_export"))
            return
        from chatbot.export import export_conversation

        try:
            paths = export_conversation(storage, conversation_id)
        except (ChatbotError, OSError) as err:
            self.notify(t("notice.not_exported", error=err), severity="error", timeout=10)
            return
        self.notify(t("notice.exported", paths=", ".join(str(p) for p in paths)), timeout=10)

    # --- models -------------------------------------------------------------------------------

    def action_models(self) -> None:
        storage = self.session.storage
        current = {"name": Path(self.session.model_path).name, "path": self.session.model_path}
        try:
            models = storage.models() if storage else [current]
        except ChatbotError as err:
            self.notify(str(err), severity="error")
            return

        def chosen(path: str | None) -> None:
            if path and path != self.session.model_path:
                self.notify(t("notice.loading_model", path=path))
                self.switch_model(path)

        self.push_screen(ModelsScreen(models or [current], self.session.model_path), chosen)

    @work(thread=True, exclusive=True, group="model", exit_on_error=False)
    def switch_model(self, path: str) -> None:
        try:
            self.session.switch_model(Path(path))
        except ChatbotError as err:
            self.call_from_thread(self.notify, t("notice.cannot_switch", error=err), severity="error")
            return
        self.call_from_thread(self.switched_model, path)

    def switched_model(self, path: str) -> None:
        self.sub_title = Path(path).name
        self.update_status()
        self.notify(t("notice.switched", path=path))

    # --- the rest -----------------------------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen([(k.key, k.does) for k in KEYS] + [(key, t(does)) for key, does in OTHER_KEYS]))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def get_system_commands(self, screen):
        """Textual's own commands (its theme picker stays: ours only toggles light and dark),
        then the chat's, each with what it does and its key."""
        yield from super().get_system_commands(screen)
        for k in KEYS:
            yield SystemCommand(
                k.title, f"{k.does[0].upper()}{k.does[1:]} ({k.key})", partial(self.run_action, k.action)
            )
