"""The model catalog: spec files in a folder, each checked beyond its schema against this machine.

`spec.py` says what a valid spec is (pure, no I/O); this module reads the files and adds what needs the
machine or scikit-learn: the data roots, and the estimator's own parameter validation. It sits above
`training` in the layering, so `spec` never imports upward.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import re
import zlib
from collections.abc import Callable
from pathlib import Path

from modelgate.config import contained_data_path, modelgate_home
from modelgate.estimator_check import estimator_params_problem
from modelgate.fileio import WriteFailed, write_atomically
from modelgate.spec import FileSource, InvalidSpec, ModelSpec, SpecError, parse_spec


def spec_files(models_dir: Path, name: str) -> list[Path]:
    """The files that may hold model `name` in `models_dir`: `<name>.yaml` and `<name>.yml`, those there."""
    return [p for p in (models_dir / f"{name}.yaml", models_dir / f"{name}.yml") if p.is_file()]


def spec_file(models_dir: Path, name: str) -> Path | None:
    """The file of model `name` in `models_dir` (`<name>.yaml`, else `<name>.yml`), when there is one."""
    found = spec_files(models_dir, name)
    return found[0] if found else None


def load_spec(path: Path) -> ModelSpec:
    """One spec file, checked beyond its schema: readable UTF-8, name = file name, data path inside the data
    roots, estimator params the estimator accepts."""
    file = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except IsADirectoryError:
        raise InvalidSpec([SpecError(file, "<file>", "is a directory, not a spec file")]) from None
    except UnicodeDecodeError as exc:
        raise InvalidSpec([SpecError(file, "<file>", f"is not UTF-8 text (byte {exc.start})")]) from None
    except OSError as exc:
        raise InvalidSpec([SpecError(file, "<file>", f"cannot be read: {exc.strerror or exc}")]) from None
    key = _content_key(text)
    cached = _cached_spec(key)
    spec = cached if cached is not None else parse_spec(text, file)
    if spec.name != path.stem:
        raise InvalidSpec([SpecError(file, "name", f"must match the file name ({path.stem!r}), got {spec.name!r}")])
    errors = []
    if isinstance(spec.source, FileSource) and "://" not in spec.source.path:
        try:  # the machine's data roots: checked on every load, never cached
            contained_data_path(spec.source.path)
        except ValueError as exc:
            errors.append(SpecError(file, "source.path", str(exc)))
    # your factory's code may change while the spec does not: checked again (its own cache keys the source)
    problem = estimator_params_problem(spec) if cached is None or spec.estimator.factory is not None else None
    if problem is not None:
        field = "estimator.factory" if problem.startswith("estimator.factory") else "estimator.params"
        errors.append(SpecError(file, field, problem))
    if errors:
        raise InvalidSpec(errors)
    if cached is None:
        _remember_spec(key, spec)
    return spec


log = logging.getLogger(__name__)
# what decides a spec is valid
_CHECKED_BY = ("spec.py", "estimator_check.py", "training.py", "catalog.py", "factories.py")


@functools.cache
def _checker_version() -> str:
    """What a cached verdict on a spec depends on besides its text: our checking code and scikit-learn's version."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _CHECKED_BY:
        digest.update((here / name).read_bytes())
    for package in ("scikit-learn", "pydantic"):
        digest.update(importlib.metadata.version(package).encode())
    return digest.hexdigest()[:16]


def _content_key(text: str) -> str:
    return hashlib.sha256(f"{_checker_version()}\0{text}".encode()).hexdigest()


def _cache_dir() -> Path:
    return modelgate_home() / "cache" / "specs"


def _cached_spec(key: str) -> ModelSpec | None:
    """The spec a valid file with this content (and this checker) parsed to before, without YAML or
    scikit-learn (pydantic validates the JSON again, in its compiled core): a parse of a thousand specs pays
    about a millisecond each."""
    try:
        payload = (_cache_dir() / f"{key}.json").read_bytes()
    except OSError:
        return None
    try:
        return ModelSpec.model_validate_json(payload)
    except ValueError:  # a torn or foreign file: parse the spec as if there were none
        return None


def _remember_spec(key: str, spec: ModelSpec) -> None:
    """Written atomically (a rename), so a concurrent parse reads a whole entry or none; a read-only home
    only costs the speed-up."""
    payload = spec.model_dump_json(by_alias=True, round_trip=True).encode()
    try:
        write_atomically(_cache_dir() / f"{key}.json", payload, what="spec cache entry")
    except WriteFailed as exc:
        log.debug("%s", exc)


def load_specs(
    directory: Path, *, keep: Callable[[str], bool] | None = None
) -> tuple[list[ModelSpec], list[SpecError]]:
    """Every valid spec in `directory` (sorted by name) and the errors of the invalid ones, one file at a time.

    A file that cannot be read or parsed only costs its own model; two files naming the same model load neither.
    `keep(stem)` picks the files to read by name (a spec's name is its file's): one DAG file's shard.
    """
    found: list[tuple[Path, ModelSpec]] = []
    errors: list[SpecError] = []
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        if keep is not None and not keep(path.stem):
            continue
        try:
            found.append((path, load_spec(path)))
        except InvalidSpec as exc:
            errors.extend(exc.errors)
        except Exception as exc:  # a bug of ours must cost this model only, never every model's DAGs
            errors.append(SpecError(str(path), "<file>", f"could not be loaded: {type(exc).__name__}: {exc}"[:500]))
    by_name: dict[str, list[Path]] = {}
    for path, spec in found:
        by_name.setdefault(spec.name, []).append(path)
    specs = []
    for path, spec in found:
        files = by_name[spec.name]
        if len(files) == 1:
            specs.append(spec)
        elif path == files[0]:
            errors.append(
                SpecError(str(path), "name", f"{spec.name!r} is also defined in {', '.join(map(str, files[1:]))}")
            )
    return sorted(specs, key=lambda s: s.name), errors


DAG_FILE = "modelgate_dags"  # the DAG file's stem: modelgate_dags.py is shard 0, modelgate_dags_<k>.py shard k
_SHARD_FILE = re.compile(rf"{DAG_FILE}(?:_(\d+))?\.py")
MAX_SHARDS = 256


class ShardError(ValueError):
    """The DAG folder's shard files are not modelgate_dags.py, modelgate_dags_1.py, …, modelgate_dags_<n-1>.py."""


def dag_shard(dag_file: Path) -> tuple[int, int]:
    """(this file's shard, how many shards): the shard files beside it are counted, so adding or removing one
    (`modelgate dags shard N`) reshards every model with no setting to keep in step."""
    own = _SHARD_FILE.fullmatch(dag_file.name)
    if own is None:
        raise ShardError(f"{dag_file.name}: a modelgate DAG file is named {DAG_FILE}.py or {DAG_FILE}_<k>.py")
    indices = sorted(
        int(m.group(1) or 0) for p in dag_file.parent.glob(f"{DAG_FILE}*.py") if (m := _SHARD_FILE.fullmatch(p.name))
    )
    if indices != list(range(len(indices))):
        missing = sorted(set(range(max(indices) + 1)) - set(indices))
        raise ShardError(
            f"{dag_file.parent}: shard files must be {DAG_FILE}.py, {DAG_FILE}_1.py, … without gaps; missing "
            f"{', '.join(f'{DAG_FILE}_{k}.py' if k else f'{DAG_FILE}.py' for k in missing) or 'none'} "
            "(`modelgate dags shard N` lays them out)"
        )
    return int(own.group(1) or 0), len(indices)


def shard_of(model: str, shards: int) -> int:
    """Which of `shards` DAG files builds `model`'s DAGs: a stable hash of its name (the spec file's stem)."""
    return zlib.crc32(model.encode()) % shards


def lay_out_shards(dags_dir: Path, count: int) -> list[str]:
    """Make `count` shard files in `dags_dir`: copies of its modelgate_dags.py as modelgate_dags_1.py … and
    none beyond. What changed, one line each. Airflow moves each DAG to its new file at the next parse."""
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"shards must be between 1 and {MAX_SHARDS}, got {count}")
    first = dags_dir / f"{DAG_FILE}.py"
    try:
        text = first.read_bytes()
    except OSError as exc:
        raise ValueError(f"{first} cannot be read ({exc.strerror or exc}): it is the file every shard copies") from None
    changed = []
    for k in range(1, count):
        shard = dags_dir / f"{DAG_FILE}_{k}.py"
        if not shard.is_file() or shard.read_bytes() != text:
            write_atomically(shard, text, what="DAG shard file")
            changed.append(f"wrote {shard.name}")
    for extra in sorted(dags_dir.glob(f"{DAG_FILE}_*.py")):
        match = _SHARD_FILE.fullmatch(extra.name)
        if match and match.group(1) and int(match.group(1)) >= count:
            extra.unlink()
            changed.append(f"removed {extra.name}")
    return changed
