"""Sending and replying: each message is logged, then waits its turn; one reply is decoded at a
time in a worker thread and streams into its place. A message sent while a reply is being
written is decoded after that reply is logged, so it reads that reply as part of its
conversation, as the person saw it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.worker import Worker, WorkerState, get_current_worker

from chatbot.app.guard import guarded
from chatbot.app.widgets import MessageView, PromptInput
from chatbot.errors import ChatbotError
from chatbot.i18n import t
from chatbot.session import Cancelled
from chatbot.settings import MAX_MESSAGE_CHARS
from chatbot.validation import clean_text


@dataclass
class Queued:
    """A logged message whose reply waits its turn."""

    text: str
    user_id: int | None  # its row in the log (None: not logging)
    conversation_id: int | None  # the conversation it was sent in: its reply is logged there
    view: MessageView  # where the reply will be written


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


class Replying:
    """The chat's sending and replying; mixed into `ChatApp`."""

    def init_replying(self) -> None:
        self.last_latency = ""
        self.reply_worker: Worker | None = None
        self.reply_view: MessageView | None = None
        self.waiting: deque[Queued] = deque()  # messages whose reply waits its turn

    def send_text(self, typed: str) -> None:
        """Log the message, show it, and start decoding its reply (or queue it behind the reply
        being written). The box is emptied only once the message is logged."""
        text = clean_text(typed)
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
        self.waiting.append(Queued(text, user_id, self.session.conversation_id, bot))
        self.next_reply()

    def replying(self) -> bool:
        return self.reply_worker is not None and not self.reply_worker.is_finished

    def next_reply(self) -> None:
        if self.waiting and not self.replying():
            queued = self.waiting.popleft()
            queued.view.caption = ""
            self.reply_view = queued.view
            self.reply_worker = self.decode_reply(queued)

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
    def decode_reply(self, queued: Queued) -> None:
        worker, view = get_current_worker(), queued.view
        try:
            exchange = self.session.respond(
                queued.text,
                on_text=view.grow,
                cancelled=lambda: worker.is_cancelled,
                user_id=queued.user_id,
                conversation_id=queued.conversation_id,
            )
        except Cancelled:
            self.call_from_thread(self.finish_reply, view, view.text, None, t("caption.cancelled"))
            return
        except ChatbotError as err:
            self.call_from_thread(self.finish_reply, view, "", None, t("caption.not_logged", error=err))
            return
        r, decoding = exchange.reply, exchange.decoding
        caption = reply_caption(decoding, r.seconds * 1000, r.score)
        if exchange.model_path != self.session.model_path:  # the bundled model of the message's language
            caption += t("caption.model", name=Path(exchange.model_path).name)
        if r.truncated:  # as the model that replied reads
            caption += t("caption.truncated", limit=exchange.source_limit)
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
