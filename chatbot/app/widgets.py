"""Widgets of the chat screen. They show things and post messages; they never touch the log."""

from __future__ import annotations

from rich.markup import escape
from textual.binding import Binding
from textual.widgets import Input, Static


def printable(text: str) -> str:
    """Control characters shown as visible symbols, so no message can drive the terminal."""
    return "".join(ch if ch.isprintable() or ch == "\n" else f"\\x{ord(ch):02x}" for ch in text)


class MessageView(Static, can_focus=True):
    """One message. A bot message remembers its log id and shows how it was made."""

    def __init__(self, role: str, text: str, *, message_id: int | None = None, caption: str = "", pending: bool = False):
        super().__init__(classes=f"message {role}" + (" pending" if pending else ""))
        self.role, self.text, self.message_id, self.caption, self.pending = role, text, message_id, caption, pending
        self.rating = ""
        self.inside: dict | None = None  # attention and probabilities of a reply decoded in this session
        self.refresh_text()

    def refresh_text(self) -> None:
        who = "you" if self.role == "user" else "bot"
        body = escape(printable(self.text)) or ("[dim]…[/]" if self.pending else "[dim](empty reply)[/]")
        caption = f"\n[dim]{escape(self.caption)}[/]" if self.caption else ""
        rating = f" [dim]{escape(self.rating)}[/]" if self.rating else ""
        self.update(f"[b]{who}[/]{rating}  {body}{caption}")

    def stream(self, text: str) -> None:
        self.text = text
        self.refresh_text()

    def finish(self, text: str, message_id: int | None, caption: str, inside: dict | None = None) -> None:
        self.text, self.message_id, self.caption, self.pending, self.inside = text, message_id, caption, False, inside
        self.remove_class("pending")
        self.refresh_text()


class PromptInput(Input):
    """The message box; up and down recall earlier messages."""

    BINDINGS = [Binding("up", "older", "older message", show=False), Binding("down", "newer", "newer message", show=False)]

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
