"""Modal screens of the chat client. Each gets the data it shows and dismisses with the user's
choice; the app does the rest."""

from __future__ import annotations

import math
from collections.abc import Callable

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from chatbot.app.widgets import printable

HELP = """\
[b]Keys[/]
  enter        send the message          up / down   recall earlier messages
  ctrl+t       cycle greedy, beam search and sampling
  f2           settings of the current strategy
  f4           compare: the last message decoded by all three strategies
  escape       cancel a reply in progress
  ctrl+y / ctrl+b   rate the selected reply good / bad (tab selects a reply; default: the last)
  ctrl+r       correct the selected reply: type the reply it should have given
  f3           inside the model: attention and token probabilities of the selected reply
  ctrl+n       new conversation     ctrl+o   conversations (resume, rename, delete)
  ctrl+f       search every message ctrl+e   export this conversation (Markdown and JSON)
  f5           models: switch to another (a retrained one, say)
  ctrl+l       light / dark theme   ctrl+p   command palette   ctrl+q   quit

Every message is logged to SQLite before it is shown as sent, and every reply before it is shown
as final. Ratings and corrections are what `chatbot retrain` learns from.
"""


class Modal(ModalScreen):
    BINDINGS = [Binding("escape", "dismiss_none", "close")]

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class HelpScreen(Modal):
    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(HELP)


class TextPrompt(Modal):
    """One line of text: a correction, a new title."""

    def __init__(self, title: str, value: str = ""):
        super().__init__()
        self.title_text, self.value = title, value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text)
            yield Input(value=self.value, id="text")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        """Return the text, unless it is blank."""
        self.dismiss(event.value.strip() or None)


class SettingsScreen(Modal):
    """Edit the settings of one strategy; a bad value is refused and the old one kept."""

    def __init__(self, strategy: str, values: dict, apply: Callable[[str, str, str], str | None]):
        super().__init__()
        self.strategy, self.values, self.apply = strategy, values, apply

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Label(f"[b]{self.strategy}[/] settings: edit a value and press enter")
            for name, value in self.values.items():
                with Horizontal(classes="setting"):
                    yield Label(name.replace("_", " "), classes="setting-name")
                    yield Input(value="" if value is None else str(value), id=f"set-{name}", classes="setting-value")
            yield Label("", id="settings-error")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        """Validate and apply one value."""
        name = event.input.id.removeprefix("set-")
        error = self.apply(self.strategy, name, event.value)
        label = self.query_one("#settings-error", Label)
        if error:
            event.input.value = "" if self.values[name] is None else str(self.values[name])
            label.update(f"[red]refused:[/] {escape(error)}")
        else:
            self.values[name] = event.value
            label.update(f"[green]{name} = {escape(event.value)}[/] (applies to the next reply)")


class ConversationsScreen(Modal):
    """Pick a conversation: enter resumes, r renames, d deletes."""

    BINDINGS = [Binding("r", "choose('rename')", "rename"), Binding("d", "choose('delete')", "delete")]

    def __init__(self, conversations: list[dict]):
        super().__init__()
        self.conversations = conversations

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Conversations: enter resume · r rename · d delete · escape close")
            yield OptionList(
                *[Option(f"{escape(printable(c['title']))}  [dim]{c['messages']} messages · {c['updated_at'][:16]}[/]", id=str(c["id"]))
                  for c in self.conversations],
                id="conversation-list",
            )

    def _selected(self) -> int | None:
        options = self.query_one(OptionList)
        if options.highlighted is None:
            return None
        return int(options.get_option_at_index(options.highlighted).id)

    @on(OptionList.OptionSelected)
    def selected(self) -> None:
        """Resume the chosen conversation."""
        self.action_choose("open")

    def action_choose(self, action: str) -> None:
        chosen = self._selected()
        if chosen is not None:
            self.dismiss((action, chosen))


class SearchScreen(Modal):
    """Full-text search over every message; enter opens the message's conversation."""

    def __init__(self, search: Callable[[str], list[dict]]):
        super().__init__()
        self.search = search

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Input(placeholder="search every message", id="query")
            yield OptionList(id="results")

    @on(Input.Changed, "#query")
    def changed(self, event: Input.Changed) -> None:
        """Show the matches as the query is typed."""
        results = self.query_one("#results", OptionList)
        results.clear_options()
        for row in self.search(event.value):
            text = escape(printable(row["text"]))[:70]
            results.add_option(Option(f"[b]{row['role']}[/] {text}  [dim]{escape(row['title'])}[/]", id=str(row["conversation_id"])))

    @on(Input.Submitted, "#query")
    def first(self) -> None:
        """Enter in the query box moves to the results."""
        self.query_one("#results", OptionList).focus()

    @on(OptionList.OptionSelected)
    def selected(self, event: OptionList.OptionSelected) -> None:
        """Open that conversation."""
        self.dismiss(int(event.option.id))


def heatmap(view: dict) -> Table:
    """Reply pieces (rows) by message pieces (columns), shaded by attention weight, with each
    reply piece's probability and the model's top alternatives."""
    table = Table(box=None, padding=(0, 1), show_edge=False)
    table.add_column("piece", style="bold", no_wrap=True)
    table.add_column("p", justify="right", no_wrap=True)
    for piece in view["source_pieces"]:
        table.add_column(piece.replace("▁", "_"), justify="center", max_width=8, no_wrap=True)
    table.add_column("top alternatives", no_wrap=True)
    for i, piece in enumerate(view["reply_pieces"]):
        weights = view["weights"][i] if i < len(view["weights"]) else []
        cells = []
        for w in weights[: len(view["source_pieces"])]:
            shade = int(255 - 200 * w)
            cells.append(Text(f"{w:.2f}", style=f"black on rgb({shade},{shade},255)" if w >= 0.05 else "dim"))
        p = math.exp(view["token_logprobs"][i]) if i < len(view["token_logprobs"]) else float("nan")
        alts = " · ".join(f"{a.replace('▁', '_')} {math.exp(lp):.2f}" for a, lp in view["alternatives"][i][:3]) if i < len(view["alternatives"]) else ""
        table.add_row(piece.replace("▁", "_"), f"{p:.2f}", *cells, alts)
    return table


class AttentionScreen(Modal):
    """Inside the model: which message pieces each reply piece looked at."""

    def __init__(self, view: dict, caption: str):
        super().__init__()
        self.view, self.caption = view, caption

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide"):
            yield Label(f"[b]Attention[/] ({escape(self.caption)}): rows are reply pieces, columns the message's pieces")
            yield Static(heatmap(self.view), id="heatmap")


class CompareScreen(Modal):
    """The same message decoded three ways; 1, 2 or 3 picks the best and logs the preference."""

    BINDINGS = [Binding("1", "pick(0)", "pick 1"), Binding("2", "pick(1)", "pick 2"), Binding("3", "pick(2)", "pick 3")]

    def __init__(self, message: str, replies: list[tuple[str, str]]):
        super().__init__()
        self.message, self.replies = message, replies

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(f"[b]Compare[/] replies to: {escape(printable(self.message))[:80]}  (1/2/3 picks, escape closes)")
            with Horizontal(id="columns"):
                for i, (label, text) in enumerate(self.replies):
                    yield Static(f"[b]{i + 1}. {escape(label)}[/]\n\n{escape(printable(text))}", classes="column")

    def action_pick(self, index: int) -> None:
        if index < len(self.replies):
            self.dismiss(index)


class ModelsScreen(Modal):
    """Pick the model that writes the next replies."""

    def __init__(self, models: list[dict], current: str):
        super().__init__()
        self.models, self.current = models, current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Models: enter switches · escape closes")
            yield OptionList(
                *[Option(("● " if m["path"] == self.current else "  ") + f"{escape(m['name'])}  [dim]{escape(m['path'])}[/]", id=m["path"])
                  for m in self.models],
                id="model-list",
            )

    @on(OptionList.OptionSelected)
    def selected(self, event: OptionList.OptionSelected) -> None:
        """Switch to that model."""
        self.dismiss(event.option.id)
