"""The log as the chat shows it: conversations opened, renamed, deleted, searched and exported,
and the models replies came from."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from textual import work

from chatbot.app.replying import reply_caption
from chatbot.app.screens import ConfirmScreen, ConversationsScreen, ModelsScreen, SearchScreen, TextPrompt
from chatbot.app.widgets import MessageView, printable
from chatbot.errors import ChatbotError
from chatbot.i18n import t
from chatbot.validation import clean_text


class History:
    """The chat's conversations and models; mixed into `ChatApp`."""

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
