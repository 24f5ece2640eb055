"""The one error type a user sees: the CLI prints its message on one line and exits with 2."""


class UserError(Exception):
    """Bad input or environment: corrupt file, unsupported op, missing tool, model too big."""


def quoted(name) -> str:
    """A name from a model file or the file system as an error message shows it: repr-style
    quotes and escapes, so a newline, a terminal escape or a quote in it cannot break the line."""
    return repr(str(name))


def one_line(text: str) -> str:
    """`text` with every character that is not printable escaped as repr would (newlines,
    carriage returns, ANSI escapes): whatever a message quotes, it stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
