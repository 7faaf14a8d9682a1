"""One exception hierarchy: transient errors are retried by the platform, permanent ones are recorded."""


class DropbatchError(Exception):
    """Base of every error dropbatch raises on purpose."""


class TransientError(DropbatchError):
    """Worth retrying: 429, 5xx, timeouts, a claim held by a live execution."""


class PermanentError(DropbatchError):
    """Retrying cannot help: bad input, 4xx, a missing object. Record it and acknowledge."""


class UsageError(DropbatchError):
    """A user mistake on the command line (missing file, bad flag): exit 2, one readable line."""


class InvalidInput(PermanentError):
    """A file or request that fails validation."""

