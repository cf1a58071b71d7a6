"""The registry database's one transaction layer: sessions, and database errors translated to domain errors.

Every store (the registry itself, monitoring, deployments, batch predictions) opens its transactions here,
so a lost connection, a constraint violation or a missing privilege reads the same wherever it happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from modelgate.registry.errors import InvalidInput, PermissionDenied, RegistryError, RegistryUnavailable


class Database:
    """An engine plus the rules for using it: one transaction per write, errors out as `RegistryError`."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self, action: str) -> Iterator[sa.Connection]:
        """One transaction: commit on success, roll back on any error, domain errors out."""
        with translate_errors(action), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self, action: str) -> Iterator[sa.Connection]:
        """A connection for reads (no transaction is committed)."""
        with translate_errors(action), self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Database errors raised inside become the registry's typed errors, each naming the way out."""
    try:
        yield
    except RegistryError:
        raise
    except sa_exc.IntegrityError as exc:
        raise InvalidInput(f"{action} violates a registry constraint: {db_message(exc)}") from exc
    except sa_exc.ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) == "42501":  # insufficient_privilege
            raise PermissionDenied(
                f"the registry role may not {action} ({db_message(exc)}); connect as a member of "
                "modelgate_writer to change the registry"
            ) from exc
        raise
    except sa_exc.DBAPIError as exc:
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or exc.connection_invalidated:
            raise RegistryUnavailable(
                f"registry database unavailable during {action}; the transaction was rolled back and "
                f"nothing was written: {db_message(exc)}"
            ) from exc
        raise


def db_message(exc: sa_exc.DBAPIError) -> str:
    """The first line of the driver's message, without SQLAlchemy's statement dump."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
