"""Modal screens of the chat client. Each gets the data it shows and dismisses with the user's
choice; the app does the rest."""

from __future__ import annotations

import math
from collections.abc import Callable

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from chatbot.app.guard import guarded
from chatbot.app.widgets import printable
from chatbot.explain_pages import times_likelier
from chatbot.i18n import t


def key_table(rows: list[tuple[str, str]]) -> Table:
    """Keys and what they do, two columns; a long description wraps within its own column."""
    table = Table(box=None, padding=(0, 1), show_header=False, expand=True)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("does", ratio=1)
    for key, does in rows:
        table.add_row(key, does)
    return table


class Modal(ModalScreen):
    BINDINGS = [Binding("escape", "dismiss_none", "close")]

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class HelpScreen(Modal):
    """Every key, and what the log keeps."""

    def __init__(self, keys: list[tuple[str, str]]):
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Static(Text(t("help.title"), style="bold"))
            yield Static(key_table(self.keys))
            yield Static(Text("\n" + t("help.log")))


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
    @guarded
    def submitted(self, event: Input.Submitted) -> None:
        """Return the text, unless it is blank."""
        self.dismiss(event.value.strip() or None)


class SettingsScreen(Modal):
    """Edit the settings of one strategy; a bad value is refused and the old one kept."""

    def __init__(self, strategy: str, values: dict, apply: Callable[[str, str, str], str | None]):
        super().__init__()
        self.strategy, self.values, self.apply = strategy, values, apply

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(t("settings.title", strategy=self.strategy), style="bold"))
            yield Label("", id="settings-error")  # above the values: always in view
            with VerticalScroll(id="settings-values"):
                for name, value in self.values.items():
                    with Horizontal(classes="setting"):
                        yield Label(t(f"setting.{name}"), classes="setting-name")
                        yield Input(
                            value="" if value is None else str(value),
                            id=f"set-{name}",
                            classes="setting-value",
                            compact=True,
                        )

    def on_mount(self) -> None:
        self.query(Input).first().focus()

    @on(Input.Submitted)
    @guarded
    def submitted(self, event: Input.Submitted) -> None:
        """Validate and apply one value."""
        name = event.input.id.removeprefix("set-")
        error = self.apply(self.strategy, name, event.value)
        label = self.query_one("#settings-error", Label)
        if error:
            event.input.value = "" if self.values[name] is None else str(self.values[name])
            label.update(Text.assemble((t("settings.refused"), "red"), error))
        else:
            self.values[name] = event.value
            label.update(Text.assemble((f"{name} = {printable(event.value)}", "green"), t("settings.applied")))


class ConfirmScreen(Modal):
    """A yes-or-no question; only y says yes."""

    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n", "answer(False)", "no")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.question))
            yield Static(Text(t("confirm.answer"), style="bold"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ConversationsScreen(Modal):
    """Pick a conversation: enter resumes, r renames, d deletes."""

    BINDINGS = [Binding("r", "choose('rename')", "rename"), Binding("d", "choose('delete')", "delete")]

    def __init__(self, conversations: list[dict]):
        super().__init__()
        self.conversations = conversations

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(t("conversations.title"), style="bold"))
            yield OptionList(
                *[
                    Option(
                        Text.assemble(
                            printable(c["title"]),
                            (t("conversations.row", messages=c["messages"], updated=c["updated_at"][:16]), "dim"),
                        ),
                        id=str(c["id"]),
                    )
                    for c in self.conversations
                ],
                id="conversation-list",
            )
            if not self.conversations:
                yield Static(Text(t("conversations.none"), style="dim"))

    def _selected(self) -> int | None:
        options = self.query_one(OptionList)
        if options.highlighted is None:
            return None
        return int(options.get_option_at_index(options.highlighted).id)

    @on(OptionList.OptionSelected)
    @guarded
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
        self.conversation_of: dict[int, int] = {}  # message id -> its conversation

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Input(placeholder=t("search.placeholder"), id="query")
            yield OptionList(id="results")

    @on(Input.Changed, "#query")
    @guarded
    def changed(self, event: Input.Changed) -> None:
        """Show the matches as the query is typed: one option per message (several may share a
        conversation)."""
        results = self.query_one("#results", OptionList)
        results.clear_options()
        self.conversation_of = {}
        for row in self.search(event.value):
            self.conversation_of[row["id"]] = row["conversation_id"]
            prompt = Text.assemble(
                (row["role"], "bold"), " ", printable(row["text"][:70]), ("  " + printable(row["title"]), "dim")
            )
            results.add_option(Option(prompt, id=str(row["id"])))

    @on(Input.Submitted, "#query")
    @guarded
    def first(self) -> None:
        """Enter in the query box moves to the results."""
        results = self.query_one("#results", OptionList)
        if results.option_count:
            results.focus()
            results.highlighted = 0

    @on(OptionList.OptionSelected)
    @guarded
    def selected(self, event: OptionList.OptionSelected) -> None:
        """Open that message's conversation."""
        self.dismiss(self.conversation_of[int(event.option.id)])


def short(piece: str, width: int = 6) -> str:
    """A piece as a column heading: '▁' (a word start) shown as '_', cut to `width`."""
    text = printable(piece.replace("▁", "_"))
    return text if len(text) <= width else text[: width - 1] + "…"


def fill_heatmap(table: DataTable, view: dict) -> None:
    """Reply pieces (rows) by message pieces (columns), each cell the attention weight in
    percent, shaded by it, with each reply piece's probability, how many times likelier the
    message made it than no message would (where the model can tell), where a taught reply
    weighed in its log id and weight (`chatbot.taught`), and the model's top alternatives.
    Percent keeps a column three characters wide, so a message of twenty pieces fits 80 columns
    and a longer one scrolls sideways with the reply pieces held in view."""
    gains, taught = view.get("gains") or [], view.get("taught") or []
    table.add_column(t("inside.piece"), key="piece")
    table.add_column("p", key="p")
    table.add_column("x msg", key="gain")
    if any(taught):  # pieces a taught reply weighed in on: its log id and its weight
        table.add_column(t("inside.taught"), key="taught")
    for i, piece in enumerate(view["source_pieces"]):
        table.add_column(Text(short(piece, 4)), key=f"s{i}")
    table.add_column(t("inside.alternatives"), key="alternatives")
    for i, piece in enumerate(view["reply_pieces"]):
        weights = view["weights"][i] if i < len(view["weights"]) else []
        cells = []
        for w in weights[: len(view["source_pieces"])]:
            shade = int(255 - 200 * min(max(w, 0.0), 1.0))
            cells.append(
                Text(f"{100 * w:3.0f}", style=f"black on rgb({shade},{shade},255)")
                if w >= 0.05
                else Text("  ·", style="dim")
            )
        cells += [Text("")] * (len(view["source_pieces"]) - len(cells))
        p = f"{math.exp(view['token_logprobs'][i]):.2f}" if i < len(view["token_logprobs"]) else ""
        alternatives = view["alternatives"][i][:3] if i < len(view["alternatives"]) else []
        alts = " · ".join(f"{short(a, 10)} {math.exp(lp):.2f}" for a, lp in alternatives)
        gain = times_likelier(gains[i]) if i < len(gains) else ""
        lent = (
            [f"#{taught[i][1]} {100 * taught[i][0]:.0f}%" if i < len(taught) and taught[i] else ""]
            if any(taught)
            else []
        )
        table.add_row(Text(short(piece, 10), style="bold"), p, gain, *lent, *cells, Text(alts))


class AttentionScreen(Modal):
    """Inside the model: which message pieces each reply piece looked at."""

    def __init__(self, view: dict, caption: str):
        super().__init__()
        self.view, self.caption = view, caption

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(Text.assemble((t("inside.title"), "bold"), f" ({printable(self.caption)})"))
            yield Label(Text(t("inside.legend"), style="dim"))
            yield Label(Text(t("inside.gain"), style="dim"))
            yield DataTable(id="heatmap", cursor_type="row", zebra_stripes=False)

    @guarded
    def on_mount(self) -> None:
        table = self.query_one("#heatmap", DataTable)
        table.fixed_columns = 3
        fill_heatmap(table, self.view)


class CompareScreen(Modal):
    """The same message decoded three ways; 1, 2 or 3 picks the best and logs the preference."""

    BINDINGS = [Binding("1", "pick(0)", "pick 1"), Binding("2", "pick(1)", "pick 2"), Binding("3", "pick(2)", "pick 3")]

    def __init__(self, message: str, replies: list[tuple[str, str]]):
        super().__init__()
        self.message, self.replies = message, replies

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(
                Text.assemble(
                    (t("key.compare.title"), "bold"),
                    t("compare.title"),
                    printable(self.message[:80]),
                    t("compare.keys"),
                )
            )
            with Horizontal(id="columns"):
                for i, (label, text) in enumerate(self.replies):
                    yield Static(
                        Text.assemble((f"{i + 1}. {label}", "bold"), "\n\n", printable(text)), classes="column"
                    )

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
            yield Label(Text(t("models.title")))
            yield OptionList(
                *[
                    Option(
                        Text.assemble(
                            "● " if m["path"] == self.current else "  ",
                            printable(m["name"]),
                            ("  " + printable(m["path"]), "dim"),
                        ),
                        id=m["path"],
                    )
                    for m in self.models
                ],
                id="model-list",
            )

    @on(OptionList.OptionSelected)
    @guarded
    def selected(self, event: OptionList.OptionSelected) -> None:
        """Switch to that model."""
        self.dismiss(event.option.id)


class WalkThroughScreen(Modal):
    """One reply, step by step (`chatbot.explain`): left and right turn the pages; on a decoder
    step of greedy search or sampling, 1 to 5 ask what if the model had written that top piece
    there (`what_if(step, piece, page)` walks through again with it forced)."""

    BINDINGS = [
        Binding("right,n,space", "turn(1)", "next page"),
        Binding("left,p", "turn(-1)", "previous page"),
        Binding("home", "turn(-1000)", "first page", show=False, priority=True),  # before the page's scroll
        Binding("end", "turn(1000)", "last page", show=False, priority=True),
        *[Binding(str(k), f"what_if({k})", "what if", show=False) for k in range(1, 6)],
    ]

    def __init__(self, pages: list, heading: str, steps: dict | None = None, what_if=None, page: int = 0):
        super().__init__()
        self.pages, self.heading, self.page = pages, heading, min(page, len(pages) - 1)
        self.steps, self.what_if = steps or {}, what_if  # steps: page -> that decoder step

    def action_what_if(self, k: int) -> None:
        step = self.steps.get(self.page)
        if step is None or self.what_if is None or k > len(step["top"]):
            self.notify(t("notice.what_if_here"))
            return
        self.dismiss(None)
        self.what_if(step["step"], step["top"][k - 1][0], self.page)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(Text(self.heading), id="walk-heading")
            yield Label("", id="walk-position")
            with VerticalScroll(id="walk-page"):
                yield Static(id="walk-body")

    def on_mount(self) -> None:
        self.show()

    def action_turn(self, by: int) -> None:
        self.page = min(max(self.page + by, 0), len(self.pages) - 1)
        self.show()

    def show(self) -> None:
        position = t("walk.position", page=self.page + 1, pages=len(self.pages))
        if self.page in self.steps and self.what_if is not None:
            position += t("walk.what_if_keys")
        self.query_one("#walk-position", Label).update(Text(position, style="dim"))
        self.query_one("#walk-body", Static).update(self.pages[self.page])
        self.query_one("#walk-page", VerticalScroll).scroll_home(animate=False)
