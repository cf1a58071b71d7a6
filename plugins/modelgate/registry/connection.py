"""Which registry database to use, and how to build an engine for it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from modelgate.config import REGISTRY_URL_ENV
from modelgate.jsonable import jsonable


@dataclass(frozen=True)
class RegistryTarget:
    url: str
    embedded: bool
    origin: str  # "env", "airflow", "embedded", "explicit"


def normalize_url(url: str) -> str:
    """Use psycopg 3 whatever scheme the user wrote (postgres://, postgresql://, +psycopg2)."""
    from sqlalchemy.exc import ArgumentError

    from modelgate.registry.errors import InvalidInput

    example = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
        port = parsed.port  # a non-numeric port fails here
    except (ArgumentError, ValueError):
        raise InvalidInput(f"the registry URL is not a database URL; expected {example}") from None
    if parsed.get_backend_name() != "postgresql":
        raise InvalidInput(f"the registry must be PostgreSQL, got a {parsed.get_backend_name()!r} URL; use {example}")
    if port is not None and not 0 < port < 65536:
        raise InvalidInput(f"the registry URL's port {port} is out of range; use {example}")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def resolve_target(explicit_url: str | None = None) -> RegistryTarget:
    """Explicit URL, else $MODELGATE_REGISTRY_URL, else the embedded server."""
    if explicit_url:
        return RegistryTarget(normalize_url(explicit_url), embedded=False, origin="explicit")
    env_url = os.environ.get(REGISTRY_URL_ENV)
    if env_url:
        return RegistryTarget(normalize_url(env_url), embedded=False, origin="env")
    from modelgate.registry.embedded import start_embedded

    return RegistryTarget(start_embedded(), embedded=True, origin="embedded")


def dumps_jsonb(value: Any) -> str:
    return json.dumps(jsonable(value), allow_nan=False)


def create_registry_engine(url: str, *, pool_size: int = 5) -> sa.Engine:
    return sa.create_engine(
        normalize_url(url),
        json_serializer=dumps_jsonb,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"connect_timeout": 10, "application_name": "modelgate"},
    )
