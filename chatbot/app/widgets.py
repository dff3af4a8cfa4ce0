"""Widgets of the chat screen. They show things and post messages; they never touch the log."""

from __future__ import annotations

import time

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input, Static

from chatbot.i18n import t
from chatbot.validation import printable  # noqa: F401 (the screens import it from here too)

STREAM_INTERVAL = 0.05  # seconds between redraws of a reply as it grows


class MessageView(Static, can_focus=True):
    """One message. A bot message remembers its log id, how it was made, and the feedback the
    person gave it (a rating, a correction)."""

    class Grew(Message, bubble=False):
        """The reply being decoded has grown (see `grow`)."""

    def __init__(
        self, role: str, text: str, *, message_id: int | None = None, caption: str = "", pending: bool = False
    ):
        super().__init__(classes=f"message {role}" + (" pending" if pending else ""))
        self.role, self.text, self.message_id, self.caption, self.pending = role, text, message_id, caption, pending
        self.rating = 0  # +1 good, -1 bad, 0 none
        self.correction: str | None = None
        self.inside: dict | None = None  # attention and probabilities of a reply decoded in this session
        self.decoding: dict | None = None  # a reply's strategy and settings, as logged (`session.logged_decoding`)
        self.latest, self.grew_posted, self.last_grew = text, False, time.monotonic()  # a quick reply shows only whole
        self.refresh_text()

    def grow(self, text: str) -> None:
        """From the decoding thread: show `text` soon. The screen is redrawn at most every
        STREAM_INTERVAL seconds and never waited for: a redraw per token, waited for, made a
        sampled reply several times slower in the chat than without a screen."""
        self.latest = text
        now = time.monotonic()
        if not self.grew_posted and now - self.last_grew >= STREAM_INTERVAL:
            self.grew_posted, self.last_grew = True, now
            self.post_message(self.Grew())

    def on_message_view_grew(self, _: Grew) -> None:
        self.grew_posted = False  # before reading `latest`: a later text then posts again
        if self.pending:
            self.stream(self.latest)

    def refresh_text(self) -> None:
        """Assembled as styled text, never as markup: a message may hold anything, "[31m" too."""
        body = printable(self.text) or ("…" if self.pending else t("message.empty"))
        parts = [(t("role.you") if self.role == "user" else t("role.bot"), "bold")]
        parts.append({1: (t("rating.good"), "green"), -1: (t("rating.bad"), "red")}.get(self.rating, ""))
        parts += ["  ", (body, "dim") if not self.text else body]
        if self.caption:
            parts.append(("\n" + printable(self.caption), "dim"))
        if self.correction:
            parts += [("\n" + t("message.corrected"), "dim"), printable(self.correction)]
        self.update(Text.assemble(*parts))

    def stream(self, text: str) -> None:
        self.text = text
        self.refresh_text()

    def finish(
        self, text: str, message_id: int | None, caption: str, inside: dict | None = None, decoding: dict | None = None
    ) -> None:
        self.text, self.message_id, self.caption, self.pending, self.inside = text, message_id, caption, False, inside
        self.decoding = decoding
        self.remove_class("pending")
        self.refresh_text()


class PromptInput(Input):
    """The message box; up and down recall earlier messages."""

    BINDINGS = [
        Binding("up", "older", "older message", show=False),
        Binding("down", "newer", "newer message", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.history: list[str] = []
        self.position = 0

    def remember(self, text: str) -> None:
        self.history.append(text)
        self.position = len(self.history)

    def action_older(self) -> None:
        if self.position > 0:
            self.position -= 1
            self.value = self.history[self.position]
            self.cursor_position = len(self.value)

    def action_newer(self) -> None:
        if self.position < len(self.history):
            self.position += 1
            self.value = self.history[self.position] if self.position < len(self.history) else ""
            self.cursor_position = len(self.value)
