"""The registry database's one transaction layer: sessions, and database errors translated to domain errors.

Every store (the registry itself, monitoring, deployments, batch predictions) opens its transactions here,
so a lost connection, a constraint violation or a missing privilege reads the same wherever it happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from modelgate.registry.errors import (
    InvalidInput,
    OutcomeUnknown,
    PermissionDenied,
    RegistryError,
    RegistryUnavailable,
)


class Database:
    """An engine plus the rules for using it: one transaction per write, errors out as `RegistryError`."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self, action: str) -> Iterator[sa.Connection]:
        """One transaction: commit on success, roll back on any error, domain errors out.

        A connection lost during COMMIT is `OutcomeUnknown`, not "nothing was written": PostgreSQL may have
        committed before the reply was lost.
        """
        with translate_errors(action), self.engine.connect() as conn:
            trans = conn.begin()
            try:
                yield conn
            except BaseException:
                with suppress(Exception):
                    trans.rollback()
                raise
            try:
                trans.commit()
            except sa_exc.DBAPIError as exc:
                if _connection_lost(exc):
                    raise OutcomeUnknown(
                        f"the registry connection was lost while committing {action}: it may or may not have "
                        f"been written; read the audit log (modelgate history) before retrying: {db_message(exc)}"
                    ) from exc
                raise

    @contextmanager
    def read(self, action: str) -> Iterator[sa.Connection]:
        """A connection for reads (no transaction is committed)."""
        with translate_errors(action), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def arrow_transaction(self, action: str) -> Iterator[Any]:
        """One transaction on an ADBC (Arrow) connection to the same database, for bulk writes: a DB-API
        connection whose cursors take Arrow data (`adbc_ingest`). Committed on success, rolled back on any
        error, with the same error translation as `transaction`."""
        import adbc_driver_postgresql.dbapi as adbc

        with translate_errors(action):
            conn = adbc.connect(libpq_uri(self.engine.url))
        try:
            with translate_errors(action):
                yield conn
                conn.commit()
        except BaseException:
            with suppress(Exception):
                conn.rollback()
            raise
        finally:
            conn.close()

    def dispose(self) -> None:
        self.engine.dispose()


def libpq_uri(url: sa.URL) -> str:
    """The SQLAlchemy URL as libpq (and ADBC) take it: `postgresql://…`, socket directories as `?host=`."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Database errors raised inside (SQLAlchemy's, or ADBC's for Arrow transfers) become the registry's
    typed errors, each naming the way out; anything else passes through unchanged."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as exc:
        translated = _adbc_error(action, exc) if is_adbc_error(exc) else _sqlalchemy_error(action, exc)
        if translated is exc:
            raise
        raise translated from exc


def is_adbc_error(exc: BaseException) -> bool:
    """An error raised by the ADBC driver (Arrow transfers), as opposed to SQLAlchemy's."""
    return type(exc).__module__.startswith("adbc_driver_manager")


def _sqlalchemy_error(action: str, exc: Exception) -> Exception:
    if isinstance(exc, sa_exc.IntegrityError):
        return InvalidInput(f"{action} violates a registry constraint: {db_message(exc)}")
    if isinstance(exc, sa_exc.ProgrammingError) and getattr(exc.orig, "sqlstate", None) == "42501":
        return _denied(action, db_message(exc))  # insufficient_privilege
    if isinstance(exc, sa_exc.DBAPIError) and _connection_lost(exc):
        return _unavailable(action, db_message(exc))
    return exc


def _connection_lost(exc: sa_exc.DBAPIError) -> bool:
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or exc.connection_invalidated


def _adbc_error(action: str, exc: Exception) -> Exception:
    from adbc_driver_manager import dbapi

    message = str(exc).strip().splitlines()[0]
    if isinstance(exc, dbapi.IntegrityError):
        return InvalidInput(f"{action} violates a registry constraint: {message}")
    if getattr(exc, "sqlstate", None) == "42501":
        return _denied(action, message)
    if isinstance(exc, dbapi.OperationalError | dbapi.InterfaceError):
        return _unavailable(action, message)
    return exc


def _denied(action: str, message: str) -> PermissionDenied:
    return PermissionDenied(
        f"the registry role may not {action} ({message}); connect as a member of modelgate_writer to change "
        "the registry"
    )


def _unavailable(action: str, message: str) -> RegistryUnavailable:
    return RegistryUnavailable(
        f"registry database unavailable during {action}; the transaction was rolled back and nothing was "
        f"written: {message}"
    )


def db_message(exc: sa_exc.DBAPIError) -> str:
    """The first line of the driver's message, without SQLAlchemy's statement dump."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
