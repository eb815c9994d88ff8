"""The error every subcommand raises for a mistake the user can fix."""


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""
