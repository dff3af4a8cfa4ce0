"""Unexpected errors in the chat: no key press ends the app. An error in an action, a dialog or a
worker becomes a one-line notice, with its traceback appended to an error file, and the chat
goes on; a burst of them, or one that escaped Textual's own machinery, ends it with status 1 and
one line naming the file."""

from __future__ import annotations

import os
import time
import traceback
from collections import deque
from pathlib import Path

from chatbot.app.guard import guarded_call
from chatbot.errors import ChatbotError
from chatbot.i18n import t

ERROR_BURST = 20  # unexpected errors within a second: the app cannot go on


def error_file() -> Path:
    """Where tracebacks of unexpected errors go: the platform's user log directory."""
    from platformdirs import user_log_dir

    return Path(user_log_dir("chatbot")) / "chat-errors.log"


class ErrorReporting:
    """What the chat (a Textual `App`) does with unexpected errors; mixed into `ChatApp`."""

    def init_errors(self, errors: Path | None) -> None:
        """`errors`: the file that gets the tracebacks (default `error_file()`)."""
        self.errors = errors
        self.unexpected: list[str] = []  # one line per unexpected error, as noticed
        self.error_times: deque[float] = deque(maxlen=ERROR_BURST)
        self.fatal: str | None = None  # set when an unexpected error stopped the app

    def report(self, error: BaseException) -> None:
        """An unexpected error (a bug) in something a key or a message set off: its traceback goes
        to the error file, the person gets one line, and the chat goes on. A burst of them (one
        in every frame, say) stops the app instead (`stop_on`). A ChatbotError is no bug: it
        says what went wrong (the log locked by another program, say) and is only shown."""
        if isinstance(error, ChatbotError):
            self.notify(str(error), severity="error", timeout=10)
            return
        path = self.record(error)
        line = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}" if str(error) else type(error).__name__
        self.unexpected.append(line)
        now = time.monotonic()
        self.error_times.append(now)
        if len(self.error_times) == ERROR_BURST and now - self.error_times[0] < 1.0:
            self.stop_on(line, path)
            return
        self.notify(t("notice.unexpected", line=line, path=path), severity="error", timeout=10)

    def stop_on(self, line: str, path: Path) -> None:
        self.fatal = f"the chat stopped on an unexpected error ({line}); its traceback is in {path}"
        self.exit(None, 1)

    def _handle_exception(self, error: Exception) -> None:
        """Textual calls this with an exception that escaped everything `guarded` covers (its own
        machinery, rendering): the app cannot go on. Exit with status 1 and one line naming the
        error file, which holds the traceback, rather than a screenful of it."""
        path = self.record(error)
        line = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}" if str(error) else type(error).__name__
        self.unexpected.append(line)
        self._return_code = 1
        if self._exception is None:  # so that a test run under Textual's pilot sees it too
            self._exception = error
            self._exception_event.set()
        self.stop_on(line, path)

    def record(self, error: BaseException) -> Path:
        path = self.errors or error_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with open(fd, "a", encoding="utf-8") as f:
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                f.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))
        except OSError:
            pass
        return path

    async def run_action(self, action, default_namespace=None) -> bool:
        """Every key's action (the chat's and its dialogs'), with its unexpected errors reported."""
        try:
            return await super().run_action(action, default_namespace)
        except Exception as error:  # noqa: BLE001 (reported, not hidden)
            self.report(error)
            return True

    def push_screen(self, screen, callback=None, wait_for_dismiss=False):
        """Dialogs, with the code that acts on their answer guarded like a key's action."""
        return super().push_screen(screen, guarded_call(self, callback) if callback else None, wait_for_dismiss)
