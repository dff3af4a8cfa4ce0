"""The chat screen: conversation, message box, status line. Replies are decoded in a worker
thread and stream into the conversation; the session logs them. The screen opens before torch
and the model have loaded (a thread loads them): a message sent meanwhile is logged at once and
answered when the model is ready."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import asdict
from functools import partial
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Input, Static
from textual.worker import Worker, get_current_worker

from chatbot.app.screens import (
    AttentionScreen,
    CompareScreen,
    ConversationsScreen,
    HelpScreen,
    ModelsScreen,
    SearchScreen,
    SettingsScreen,
    TextPrompt,
)
from chatbot.app.widgets import MessageView, PromptInput
from chatbot.errors import ChatbotError
from chatbot.session import STRATEGY_ORDER, Cancelled, Session
from chatbot.settings import MAX_MESSAGE_CHARS

class ChatApp(App):
    CSS_PATH = "chat.tcss"
    TITLE = "chatbot"
    BINDINGS = [
        Binding("ctrl+t", "cycle_strategy", "strategy"),
        Binding("f2", "settings", "settings"),
        Binding("f4", "compare", "compare"),
        Binding("escape", "cancel", "cancel reply", show=False),
        Binding("ctrl+y", "rate(1)", "good"),
        Binding("ctrl+b", "rate(-1)", "bad"),
        Binding("ctrl+r", "correct", "correct"),
        Binding("f3", "attention", "attention"),
        Binding("ctrl+n", "new_conversation", "new"),
        Binding("ctrl+o", "conversations", "history"),
        Binding("ctrl+f", "search", "search"),
        Binding("ctrl+e", "export", "export", show=False),
        Binding("ctrl+l", "toggle_theme", "theme", show=False),
        Binding("f5", "models", "models", show=False),
        Binding("f1", "help", "help"),
    ]

    def __init__(self, session: Session, load: tuple[str, str, int | None] | None = None):
        """`load` (device, precision, threads): the session's model is still to be loaded."""
        super().__init__()
        self.session = session
        self.load = load
        self.last_latency = ""
        self.reply_worker: Worker | None = None

    # --- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield VerticalScroll(id="conversation")
        yield PromptInput(placeholder="Say something (F1: help)", id="prompt")
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = Path(self.session.model_path).name
        self.query_one("#prompt").focus()
        self.update_status()
        if self.session.storage is None:
            self.notify("Logging is off (--no-log): nothing is saved.")
        if self.load is not None:  # once the screen is drawn: importing torch holds the interpreter for seconds
            self.call_after_refresh(self.start_loading)

    def start_loading(self) -> None:
        """Load torch and the model in a daemon thread, not a worker: quitting meanwhile must not
        wait for the import to finish."""
        threading.Thread(target=self.load_model, args=self.load, name="load-model", daemon=True).start()

    def load_model(self, device: str, precision: str, threads: int | None) -> None:
        interval = sys.getswitchinterval()
        sys.setswitchinterval(0.1)  # longer turns for this thread: the screen needs little while it loads
        try:
            self.session.load(device, precision, threads)
            done = self.update_status
        except Exception:  # the session keeps the reason; `chatbot chat` prints it after the screen closes
            done = partial(self.exit, None, 1)
        finally:
            sys.setswitchinterval(interval)
        try:
            self.call_from_thread(done)
        except RuntimeError:  # the app closed while the model loaded
            pass

    def update_status(self) -> None:
        s = self.session
        where = f"{s.device.type} {s.precision}" if s.device is not None else "loading the model…"
        parts = [f"model {Path(s.model_path).name}", where, s.describe()]
        if self.last_latency:
            parts.append(f"last reply {self.last_latency}")
        if s.storage is None:
            parts.append("not logging")
        self.query_one("#status", Static).update("  ·  ".join(parts))

    def add_message(self, view: MessageView) -> MessageView:
        conversation = self.query_one("#conversation", VerticalScroll)
        conversation.mount(view)
        conversation.scroll_end(animate=False)
        return view

    # --- sending ------------------------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    def send(self, event: Input.Submitted) -> None:
        """Log the message, show it, and start decoding the reply."""
        text = event.value
        if not text.strip():
            return
        if self.reply_worker is not None and self.reply_worker.is_running:
            self.notify("A reply is still being written (escape cancels it).", severity="warning")
            return
        if len(text) > MAX_MESSAGE_CHARS:
            self.notify(f"That message is over {MAX_MESSAGE_CHARS:,} characters; not sent.", severity="error")
            return
        try:
            user_id = self.session.log_user(text)
        except ChatbotError as err:
            self.notify(f"Not sent: {err}", severity="error", timeout=10)
            return
        prompt = self.query_one("#prompt", PromptInput)
        prompt.remember(text)
        prompt.value = ""
        self.add_message(MessageView("user", text, message_id=user_id))
        bot = self.add_message(MessageView("bot", "", pending=True))
        self.reply_worker = self.decode_reply(text, user_id, bot)

    @work(thread=True, exclusive=True, group="reply")
    def decode_reply(self, text: str, user_id: int | None, view: MessageView) -> None:
        worker = get_current_worker()
        try:
            exchange = self.session.respond(
                text, on_text=view.grow,
                cancelled=lambda: worker.is_cancelled, user_id=user_id,
            )
        except Cancelled:
            self.call_from_thread(view.finish, view.text, None, "cancelled: not logged")
            return
        except ChatbotError as err:
            self.call_from_thread(view.finish, "", None, f"error: {err}")
            return
        r = exchange.reply
        caption = f"{r.settings['strategy']} · {r.seconds * 1000:.0f} ms · score {r.score:.2f}"
        if r.truncated:
            caption += f" · the model read only the last {self.session.model.cfg.max_source_tokens} tokens of a long message"
        self.last_latency = f"{r.seconds * 1000:.0f} ms"
        self.call_from_thread(view.finish, r.text, exchange.bot_id, caption, exchange.inside)
        self.call_from_thread(self.update_status)

    def action_cancel(self) -> None:
        if self.reply_worker is not None and self.reply_worker.is_running:
            self.reply_worker.cancel()

    # --- decoding toggle ----------------------------------------------------------------------

    def action_cycle_strategy(self) -> None:
        strategy = self.session.cycle_strategy()
        self.update_status()
        self.notify(f"Decoding: {strategy}")

    def action_settings(self) -> None:
        current = self.session.current
        values = {k: v for k, v in asdict(current).items()}

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
            self.notify("Send a message first.")
            return
        self.compare_worker(users[-1].text)

    @work(thread=True, exclusive=True, group="compare")
    def compare_worker(self, text: str) -> None:
        replies = []
        for name in STRATEGY_ORDER:
            settings = self.session.settings[name]
            r = self.session.respond(text, settings=settings, inspect=False).reply
            replies.append((self.session.describe_settings(settings), r.text, settings))

        def show() -> None:
            def picked(index: int | None) -> None:
                if index is None:
                    return
                bots = [v for v in self.query(MessageView) if v.role == "bot" and v.message_id]
                if self.session.storage and bots:
                    label, chosen, settings = replies[index]
                    self.session.storage.prefer(bots[-1].message_id, chosen, settings.to_dict())
                    self.notify(f"Preference logged: {label}")

            self.push_screen(CompareScreen(text, [(label, reply) for label, reply, _ in replies]), picked)

        self.call_from_thread(show)

    # --- feedback -----------------------------------------------------------------------------

    def selected_reply(self) -> MessageView | None:
        focused = self.focused
        if isinstance(focused, MessageView) and focused.role == "bot" and focused.message_id:
            return focused
        bots = [v for v in self.query(MessageView) if v.role == "bot" and v.message_id]
        return bots[-1] if bots else None

    def action_rate(self, rating: int) -> None:
        view = self.selected_reply()
        if view is None or self.session.storage is None:
            self.notify("No logged reply to rate.")
            return
        self.session.storage.rate(view.message_id, rating)
        view.rating = "[rated good]" if rating > 0 else "[rated bad]"
        view.refresh_text()
        self.notify("Rated good." if rating > 0 else "Rated bad.")

    def action_correct(self) -> None:
        view = self.selected_reply()
        if view is None or self.session.storage is None:
            self.notify("No logged reply to correct.")
            return

        def save(text: str | None) -> None:
            if text:
                self.session.storage.correct(view.message_id, text)
                view.caption += f" · corrected to: {text}"
                view.refresh_text()
                self.notify("Correction saved: retraining will learn it.")

        self.push_screen(TextPrompt("The reply it should have given:", view.text), save)

    def action_attention(self) -> None:
        view = self.selected_reply() or next((v for v in reversed(list(self.query(MessageView))) if v.role == "bot"), None)
        if view is None:
            self.notify("No reply to inspect.")
            return
        inside = view.inside
        if inside is None and view.message_id and self.session.storage:
            row = self.session.storage.message(view.message_id)
            inside = json.loads(row["attention"]) if row.get("attention") else None
        if inside is None:
            self.notify("This reply has no stored attention.")
            return
        self.push_screen(AttentionScreen(inside, view.caption))

    # --- conversations ------------------------------------------------------------------------

    def action_new_conversation(self) -> None:
        self.session.conversation_id = None
        self.query_one("#conversation").remove_children()
        self.notify("New conversation.")

    def open_conversation(self, conversation_id: int) -> None:
        self.session.conversation_id = conversation_id
        box = self.query_one("#conversation")
        box.remove_children()
        for row in self.session.storage.messages(conversation_id):
            caption = ""
            if row["role"] == "bot" and row["decoding"]:
                caption = f"{json.loads(row['decoding'])['strategy']} · {row['latency_ms'] or 0:.0f} ms · score {row['score'] or 0:.2f}"
            self.add_message(MessageView(row["role"], row["text"], message_id=row["id"], caption=caption))

    def action_conversations(self) -> None:
        storage = self.session.storage
        if storage is None:
            self.notify("Logging is off: there is no history.")
            return

        def chosen(choice) -> None:
            if not choice:
                return
            action, conversation_id = choice
            if action == "open":
                self.open_conversation(conversation_id)
            elif action == "delete":
                storage.delete_conversation(conversation_id)
                if self.session.conversation_id == conversation_id:
                    self.action_new_conversation()
                self.notify("Conversation deleted.")
            elif action == "rename":
                def rename(title: str | None) -> None:
                    if title:
                        storage.rename_conversation(conversation_id, title)
                        self.notify(f"Renamed to {title}.")

                self.push_screen(TextPrompt("New title:"), rename)

        self.push_screen(ConversationsScreen(storage.conversations()), chosen)

    def action_search(self) -> None:
        storage = self.session.storage
        if storage is None:
            self.notify("Logging is off: nothing to search.")
            return

        def chosen(conversation_id: int | None) -> None:
            if conversation_id is not None:
                self.open_conversation(conversation_id)

        self.push_screen(SearchScreen(storage.search), chosen)

    def action_export(self) -> None:
        storage, conversation_id = self.session.storage, self.session.conversation_id
        if storage is None or conversation_id is None:
            self.notify("Nothing logged to export yet.")
            return
        from chatbot.export import export_conversation

        paths = export_conversation(storage, conversation_id, Path.cwd())
        self.notify("Exported to " + " and ".join(str(p) for p in paths))

    # --- models -------------------------------------------------------------------------------

    def action_models(self) -> None:
        storage = self.session.storage
        models = storage.models() if storage else [{"name": Path(self.session.model_path).name, "path": self.session.model_path}]

        def chosen(path: str | None) -> None:
            if path and path != self.session.model_path:
                self.switch_model(path)

        self.push_screen(ModelsScreen(models, self.session.model_path), chosen)

    @work(thread=True, exclusive=True, group="model")
    def switch_model(self, path: str) -> None:
        try:
            self.session.switch_model(Path(path))
        except ChatbotError as err:
            self.call_from_thread(self.notify, f"Cannot switch: {err}", severity="error")
            return
        self.call_from_thread(self.notify, f"Now replying with {path}")
        self.call_from_thread(self.update_status)

    # --- the rest -----------------------------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            yield SystemCommand(binding.description.capitalize(), f"{binding.description} ({binding.key})",
                                lambda action=binding.action: self.run_action(action))
