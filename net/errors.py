"""User-facing errors: each message is one line that names the problem and the fix."""


class AFFError(Exception):
    """Base class of every error a user can cause (bad name, missing file, wrong checkpoint)."""


class UnknownNameError(AFFError, ValueError):
    """An unknown model or fusion name; the message lists the valid ones."""


class CheckpointError(AFFError):
    """A checkpoint that is missing, corrupt, or does not fit the network."""
