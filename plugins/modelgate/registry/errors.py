"""Domain errors of the model registry: every failure a caller can act on has its own type."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every registry error; the message names the problem and the way out."""


class InvalidModelName(RegistryError):
    """A model name that does not match ``^[a-z][a-z0-9_-]{0,63}$``."""


class ModelNotFound(RegistryError):
    """The named model is not registered."""


class VersionNotFound(RegistryError):
    """The model exists but not this version."""


class PromotionConflict(RegistryError):
    """The champion changed since the caller looked (compare-and-swap failed)."""


class InvalidTransition(RegistryError):
    """A status change the lifecycle does not allow (e.g. promoting a rejected version)."""


class NotServable(InvalidTransition):
    """A deploy of a version that may not take traffic (rejected, or never promoted)."""


class RegistryNotConfigured(RegistryError):
    """Inside Airflow, neither the registry connection nor $MODELGATE_REGISTRY_URL is set."""


class PermissionDenied(RegistryError):
    """The database role may not do this (a reader writing, a writer truncating)."""


class NoChampion(RegistryError):
    """An operation needs a champion and the model has none."""


class SchemaOutOfDate(RegistryError):
    """The database schema is not at the revision this code expects."""


class ArtifactIntegrityError(RegistryError):
    """An artifact's bytes do not match the sha256 the registry recorded."""


class UntrustedArtifact(ArtifactIntegrityError):
    """A skops model file holds a type its version did not list when it was registered."""


class ArtifactNotFound(RegistryError):
    """No artifact at the given URI."""


class RegistryUnavailable(RegistryError):
    """The registry database could not be reached, or the connection dropped mid-operation."""


class OutcomeUnknown(RegistryUnavailable):
    """The connection dropped while COMMIT was under way: the change may or may not have been written.

    Read the registry (the audit log) before retrying; retries that carry the champion they expect fail
    their compare-and-swap instead of acting twice.
    """


class InvalidInput(RegistryError):
    """Arguments that are malformed (bad JSON, wrong type, unknown status...)."""
