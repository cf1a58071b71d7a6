"""Where modelgate keeps its local state, and which registry it talks to, from the environment."""

from __future__ import annotations

import os
from pathlib import Path

REGISTRY_URL_ENV = "MODELGATE_REGISTRY_URL"
HOME_ENV = "MODELGATE_HOME"
ARTIFACT_ROOT_ENV = "MODELGATE_ARTIFACT_ROOT"
REGISTRY_CONN_ID = "modelgate_registry"


def project_root() -> Path | None:
    """The source checkout this package runs from, when it runs from one (editable install, plugins/)."""
    candidate = Path(__file__).resolve().parents[2]
    if (candidate / "pyproject.toml").is_file() and (candidate / "plugins" / "modelgate").is_dir():
        return candidate
    return None


def modelgate_home() -> Path:
    """The data directory: $MODELGATE_HOME, else <checkout>/.modelgate, else ~/.local/share/modelgate."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    root = project_root()
    if root is not None:
        return root / ".modelgate"
    return Path.home() / ".local" / "share" / "modelgate"


def artifact_root() -> str:
    """Artifact store root: $MODELGATE_ARTIFACT_ROOT (a path or gs://bucket/prefix), else <home>/artifacts."""
    configured = os.environ.get(ARTIFACT_ROOT_ENV)
    if configured:
        return configured
    return str(modelgate_home() / "artifacts")


def project_dir() -> Path:
    """Base for relative paths in specs: $MODELGATE_PROJECT_DIR, else the checkout, else the working dir."""
    configured = os.environ.get("MODELGATE_PROJECT_DIR")
    if configured:
        return Path(configured)
    return project_root() or Path.cwd()


def serving_root() -> Path:
    """Where the local deployment target keeps serving/<model>/: $MODELGATE_SERVING_DIR or <home>/serving."""
    configured = os.environ.get("MODELGATE_SERVING_DIR")
    return Path(configured) if configured else modelgate_home() / "serving"
