"""The one error type a user sees: the CLI prints its message on one line and exits with 2."""


class UserError(Exception):
    """Bad input or environment: corrupt file, unsupported op, missing tool, model too big."""
