"""Errors that library code raises for bad input; entry points print them on one line."""


class UserError(Exception):
    """Bad input from the user; the message is shown as-is, on one line."""
