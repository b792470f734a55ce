"""Exceptions raised by the library; the CLI turns each into one clear line."""


class AifxError(Exception):
    """Base class for every error the library raises on purpose."""


class InvalidInputError(AifxError):
    """An argument (pair, timeframe, date range, ...) is not valid."""


class MalformedFileError(AifxError):
    """An input file cannot be read as what it claims to be; nothing was written."""


class SchemaOutdatedError(AifxError):
    """The database schema is not at the revision this code expects."""


class NotFoundError(AifxError):
    """The thing asked for (an A/B test, a model version) does not exist."""


class ConflictError(AifxError):
    """The request contradicts the current state (a second active A/B test, say)."""


class RegistryError(AifxError):
    """A model version does not exist, or cannot change stage the way asked."""


class StoreUnavailableError(AifxError):
    """A store (the database, the disk a backlog spills to) cannot take the work right now;
    trying again later may succeed (HTTP 503 with Retry-After)."""


class RefusedError(AifxError):
    """A guard refused an action that would lose or misreport state; nothing was changed.
    Retrying changes nothing: a person decides (the message says how)."""
