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


def stack_airflow_home() -> Path:
    """The Airflow home of the stack `modelgate airflow` runs from here: $AIRFLOW_HOME, else under the home."""
    return Path(os.environ.get("AIRFLOW_HOME") or modelgate_home() / "airflow")


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


INCLUDE_DIR_ENV = "MODELGATE_INCLUDE_DIR"


def include_dir() -> Path:
    """The include folder (specs under models/, your estimator factories' modules): $MODELGATE_INCLUDE_DIR, else
    the project's include/."""
    configured = os.environ.get(INCLUDE_DIR_ENV)
    return Path(configured) if configured else project_dir() / "include"


def importable_include() -> None:
    """The include folder on the import path, after what is installed (a module there never shadows a package):
    where your estimator factories live, and the classes a model made by one may need to be unpickled."""
    import sys

    folder = str(include_dir())
    if folder not in sys.path:
        sys.path.append(folder)


def serving_root() -> Path:
    """Where the local deployment target keeps serving/<model>/: $MODELGATE_SERVING_DIR or <home>/serving."""
    configured = os.environ.get("MODELGATE_SERVING_DIR")
    return Path(configured) if configured else modelgate_home() / "serving"


DATA_ROOTS_ENV = "MODELGATE_DATA_ROOTS"
DEFAULT_DATA_ROOTS = "../shared/data"  # the shipped weather example's folder beside the project


def data_roots() -> list[Path]:
    """Folders a spec's local `source.path` may point into: the project, and $MODELGATE_DATA_ROOTS.

    $MODELGATE_DATA_ROOTS is a `os.pathsep`-separated list (relative entries are under the project; default
    `../shared/data`); `*` allows any path, absolute ones included.
    """
    base = project_dir().resolve()
    raw = os.environ.get(DATA_ROOTS_ENV, DEFAULT_DATA_ROOTS)
    return [base, *((base / entry).resolve() for entry in raw.split(os.pathsep) if entry.strip() and entry != "*")]


def any_data_path_allowed() -> bool:
    return "*" in os.environ.get(DATA_ROOTS_ENV, DEFAULT_DATA_ROOTS).split(os.pathsep)


def contained_data_path(raw: str) -> Path:
    """The local data file a spec names, resolved (symlinks too); ValueError when outside every data root."""
    path = Path(raw).expanduser()
    resolved = (path if path.is_absolute() else project_dir() / path).resolve()
    if any_data_path_allowed():
        return resolved
    roots = data_roots()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ValueError(
            f"{raw!r} is outside the data roots ({', '.join(str(r) for r in roots)}); add its folder to "
            f"${DATA_ROOTS_ENV}, or set it to '*' to allow any path"
        )
    return resolved
