"""User errors: bad input or arguments, reported as one line, no traceback."""


class UserError(Exception):
    """Raised for anything the user can fix; the message says what and how."""
