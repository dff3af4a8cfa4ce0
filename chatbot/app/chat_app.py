"""The chat screen: conversation, message box, status line. The screen opens before torch and the
model have loaded (a thread loads them): a message sent meanwhile is logged at once and answered
when the model is ready. Its parts, each mixed into `ChatApp`: sending and replying
(`chatbot.app.replying`), the learner's views of a reply (`chatbot.app.learning`), the log's
conversations and models (`chatbot.app.history`), unexpected errors (`chatbot.app.errors`)."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import asdict
from functools import partial
from pathlib import Path

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Input, Static

from chatbot.app.errors import ErrorReporting
from chatbot.app.guard import guarded
from chatbot.app.history import History
from chatbot.app.keys import KEYS, MODAL_ACTIONS, OTHER_KEYS
from chatbot.app.learning import Learning
from chatbot.app.replying import Replying
from chatbot.app.screens import HelpScreen, SettingsScreen, TextPrompt
from chatbot.app.widgets import MessageView, PromptInput
from chatbot.errors import ChatbotError
from chatbot.i18n import t, tr
from chatbot.session import Session
from chatbot.validation import clean_text

__all__ = ["KEYS", "OTHER_KEYS", "ChatApp"]


def on_terminal() -> bool:
    """Whether the chat's input is a terminal that is still there (false once it has hung up)."""
    try:
        return os.isatty(sys.__stdin__.fileno())
    except (AttributeError, ValueError, OSError):
        return False


class ChatApp(ErrorReporting, Replying, Learning, History, App):
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
        self.init_errors(errors)
        self.init_replying()
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
        if on_terminal():
            self.set_interval(1.0, self.check_terminal)

    def check_terminal(self) -> None:
        """A closed terminal (its tmux session killed, its window closed) reaches a chat run by
        `make` or `nohup` as no signal, only as input that has ended, which Textual's input thread
        then reads in a busy loop: leave instead."""
        if not on_terminal():
            self.fatal = tr("the terminal was closed; the chat has ended (its log is kept)")
            leave = threading.Timer(5.0, os._exit, args=(1,))  # Textual's goodbye to the gone screen may block
            leave.daemon = True
            leave.start()
            self.exit(None, 1)

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

    @on(Input.Submitted, "#prompt")
    @guarded
    def send(self, event: Input.Submitted) -> None:
        self.send_text(event.value)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """While a dialog is open, the chat's own keys wait (a second dialog on top of the first,
        or a conversation cleared behind it, would only confuse)."""
        ours = any(k.action.split("(")[0] == action for k in KEYS)
        return not (isinstance(self.screen, ModalScreen) and ours and action not in MODAL_ACTIONS)

    # --- sending ------------------------------------------------------------------------------

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

    # --- feedback -----------------------------------------------------------------------------

    def guard(self, write) -> bool:
        """Run a write to the log; a refusal (the log locked by another program, say) is a notice."""
        try:
            write()
            return True
        except ChatbotError as err:
            self.notify(t("notice.not_saved", error=err), severity="error", timeout=10)
            return False

    def selected_bot_view(self, nothing: str, logged: bool = False, doing: str | None = None) -> MessageView | None:
        """The reply an action acts on: the focused reply, else the last one written (`logged`:
        the last one in the log). None, after the notice `nothing`, when there is none; with
        `doing` (rate, correct), a focused message of your own is a notice too."""
        focused = self.focused
        if doing and isinstance(focused, MessageView) and focused.role == "user":
            self.notify(t("notice.own_message", doing=t(f"doing.{doing}")), severity="warning")
            return None

        def fits(view) -> bool:
            return view.role == "bot" and not view.pending and bool(view.message_id or not logged)

        if isinstance(focused, MessageView) and fits(focused):
            return focused
        bots = [v for v in self.query(MessageView) if fits(v)]
        if not bots or (logged and self.session.storage is None):
            self.notify(nothing)
            return None
        return bots[-1]

    def action_rate(self, rating: int) -> None:
        view = self.selected_bot_view(t("notice.no_reply_to", doing=t("doing.rate")), logged=True, doing="rate")
        if view is None:
            return
        new = 0 if view.rating == rating else rating  # the same key again takes the rating back
        if self.guard(lambda: self.session.storage.rate(view.message_id, new)):
            self.session.taught_changed()  # a good rating teaches, a bad one shuns; one taken back no longer does
            view.rating = new
            view.refresh_text()
            self.notify(t({1: "notice.rated_good", -1: "notice.rated_bad", 0: "notice.rating_removed"}[new]))

    def action_correct(self) -> None:
        view = self.selected_bot_view(t("notice.no_reply_to", doing=t("doing.correct")), logged=True, doing="correct")
        if view is None:
            return

        def save(text: str | None) -> None:
            text = clean_text(text or "")
            if text.strip() and self.guard(lambda: self.session.storage.correct(view.message_id, text)):
                self.session.taught_changed()  # the next message that reads like this one gets it
                view.correction = text
                view.refresh_text()
                self.notify(t("notice.correction_saved"))

        self.push_screen(TextPrompt(t("prompt.correction"), view.correction or view.text), save)

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
