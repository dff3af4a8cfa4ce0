"""What a learner opens on a reply: the attention and probabilities (f3), the walk-through of
the decode that wrote it (f6), and the same message answered by every strategy (f4)."""

from __future__ import annotations

import contextlib
import json

from textual import work

from chatbot.app.screens import AttentionScreen, CompareScreen, WalkThroughScreen
from chatbot.app.widgets import MessageView, printable
from chatbot.errors import ChatbotError
from chatbot.i18n import t
from chatbot.session import STRATEGY_ORDER
from chatbot.settings import settings_from


class Learning:
    """The chat's views into a reply; mixed into `ChatApp`."""

    def action_inside(self) -> None:
        view = self.selected_bot_view(t("notice.no_reply_inside"))
        if view is None:
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
        """The selected exchange (default: the last), step by step, as it was decoded; teacher
        forcing on the reply shown, or on its correction."""
        bot = self.selected_bot_view(t("notice.no_reply_walk"))
        if bot is None:
            return
        if self.session.model is None:
            self.notify(t("notice.still_loading"))
            return
        views = list(self.query(MessageView))
        user = next((v for v in reversed(views[: views.index(bot)]) if v.role == "user"), None)
        if user is None:
            self.notify(t("notice.no_message_before"))
            return
        self.notify(t("notice.walking"))
        self.walk_worker(user.text, user.message_id, bot.correction or bot.text, bot.decoding, bot.message_id)

    @work(thread=True, exclusive=True, group="walk", exit_on_error=False)
    def walk_worker(
        self,
        message: str,
        user_id: int | None,
        reply_text: str,
        decoding: dict | None,
        bot_id: int | None = None,
        forced: dict | None = None,
        page: int = 0,
    ) -> None:
        """The walk-through screen, with the settings the reply was decoded with (`decoding`, as
        logged: a sampled reply's seed draws its candidates again); `forced` {step: piece}: what if
        the model had written that piece there (opened at `page`, the step's own)."""
        from chatbot.explain import walk_through
        from chatbot.explain_pages import pages, step_pages

        engine, tokenizer, model_path = self.session.replier_for(message)
        turns = self.session.context_of(message, user_id, engine)  # as the reply read them
        settings = self.session.current
        with contextlib.suppress(ChatbotError, TypeError):  # a reply logged by another version: today's settings
            settings = settings_from(**decoding) if decoding else settings
        taught = None
        if decoding and decoding.get("taught") and bot_id is not None and self.session.storage is not None:
            row = self.session.storage.message(bot_id)  # what was taught when it was decoded, no more
            taught = self.session.memory_for(engine, tokenizer, model_path, before=row["created_at"])
        walk = walk_through(
            engine, tokenizer, message, settings, [turn.text for turn in turns], [turn.role == "bot" for turn in turns],
            reply_text=reply_text, forced=forced, taught=taught,
        )  # fmt: skip
        walk["settings"]["precision"] = self.session.precision  # as the chat replies
        heading = t("walk.heading", message=printable(message)[:60])
        if forced:
            heading += t("walk.what_if_heading", reply=printable(walk["reply"])[:40])

        def what_if(step: int, piece: str, at: int) -> None:
            self.notify(t("notice.walking"))
            self.walk_worker(message, user_id, reply_text, decoding, bot_id, {**(forced or {}), step: piece}, at)

        screen = WalkThroughScreen(pages(walk), heading, step_pages(walk), what_if, page)
        self.call_from_thread(self.push_screen, screen)

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
