"""User-facing errors: the message names the file and the problem; the CLI prints it and exits 2."""


class SrsimError(Exception):
    """An error caused by the user's input (a bad file, config or option), not by a bug."""
