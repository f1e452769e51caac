"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class UserError(ValueError):
    """Bad input: the message names the input and what to pass instead."""


class UnlearningFailed(RuntimeError):
    """The method could not finish (e.g. the loss became NaN); the input model is untouched."""


class LotusWarning(UserWarning):
    """Something a user should know that does not stop the run; the CLI prints it as one `warning:` line."""
