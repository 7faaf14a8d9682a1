"""One exception hierarchy: transient errors are retried by the platform, permanent ones are
recorded."""


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


class Conflict(Exception):
    """A generation precondition failed: someone else wrote first (the caller reads again and
    decides)."""


class Replaced(Exception):
    """The dropped object's generation is gone: replaced by a newer upload, or deleted."""


class BadMove(Exception):
    """A batch transition the state table does not allow: a programming error, never caught."""


class ConfigurationError(PermanentError):
    """A 403 on dropbatch's own call: the deployment does not grant a permission the code needs. The
    batch ends with a message that names it; retrying cannot help until someone changes the grants.
    """


def denied(service: str, exc) -> ConfigurationError:
    """The ConfigurationError for an API's 403
    (google.api_core.exceptions.Forbidden/PermissionDenied), naming the permission and the resource
    as the API did."""
    message = getattr(exc, "message", None) or str(exc)
    return ConfigurationError(
        f"{service} refused a call for a missing permission (fix the grants in infra/): "
        f"{message[:600]}"
    )
