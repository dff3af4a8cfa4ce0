"""Unexpected errors in the chat become one-line notices. Textual stops a widget's message loop at
the first exception a handler raises, so the app's own handlers and dialogs' answers are wrapped
here, and each error is reported to the app (`ChatApp.report`: a notice, and the traceback in
an error file) while the chat goes on."""

from __future__ import annotations

import functools


def guarded(method):
    """A handler of the app or of a dialog whose unexpected errors are reported (`ChatApp.report`)
    rather than ending the widget's message loop, which Textual stops at the first one."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 (reported, not hidden)
            self.app.report(error)

    return run


def guarded_call(app, callback):
    """`callback`, with its unexpected errors reported to `app`."""

    @functools.wraps(callback)
    def run(*args):
        try:
            return callback(*args)
        except Exception as error:  # noqa: BLE001 (reported, not hidden)
            app.report(error)

    return run
