"""The launcher's error type."""


class StackError(RuntimeError):
    """A start-up step failed; the message is the one line the user sees."""
