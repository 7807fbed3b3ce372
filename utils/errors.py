"""Errors that library code raises for bad input; entry points print them on one line."""


class UserError(Exception):
    """Bad input from the user; the message is shown as-is, on one line."""


class UserErrors(UserError):
    """Several problems found in one input (e.g. a file checked against a schema): one line each.

    ``str()`` joins them on one line; command-line entry points print each on its own line.
    """

    def __init__(self, lines):
        self.lines = [" ".join(str(line).split()) for line in lines]
        super().__init__("; ".join(self.lines))
