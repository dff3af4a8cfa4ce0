"""The chat's keys: each binding with its names in the message catalogue. Chosen to collide with
neither the message box's own keys nor the prefixes of tmux and GNU screen."""

from __future__ import annotations

from dataclasses import dataclass

from chatbot.i18n import t


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
