"""The one exception type that entry points turn into a one-line message and a non-zero exit."""


class ChatbotError(Exception):
    """A problem the user can fix: bad input, a missing file, an incompatible model."""
