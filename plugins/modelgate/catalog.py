"""The model catalog: spec files in a folder, each checked beyond its schema against this machine.

`spec.py` says what a valid spec is (pure, no I/O); this module reads the files and adds what needs the
machine or scikit-learn: the data roots, and the estimator's own parameter validation. It sits above
`training` in the layering, so `spec` never imports upward.
"""

from __future__ import annotations

from pathlib import Path

from modelgate.config import contained_data_path
from modelgate.estimator_check import estimator_params_problem
from modelgate.spec import FileSource, InvalidSpec, ModelSpec, SpecError, parse_spec


def spec_file(models_dir: Path, name: str) -> Path | None:
    """The file of model `name` in `models_dir` (`<name>.yaml`, else `<name>.yml`), when there is one."""
    found = [p for p in (models_dir / f"{name}.yaml", models_dir / f"{name}.yml") if p.is_file()]
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
    spec = parse_spec(text, file)
    if spec.name != path.stem:
        raise InvalidSpec([SpecError(file, "name", f"must match the file name ({path.stem!r}), got {spec.name!r}")])
    errors = []
    if isinstance(spec.source, FileSource) and "://" not in spec.source.path:
        try:
            contained_data_path(spec.source.path)
        except ValueError as exc:
            errors.append(SpecError(file, "source.path", str(exc)))
    problem = estimator_params_problem(spec)
    if problem is not None:
        errors.append(SpecError(file, "estimator.params", problem))
    if errors:
        raise InvalidSpec(errors)
    return spec


def load_specs(directory: Path) -> tuple[list[ModelSpec], list[SpecError]]:
    """Every valid spec in `directory` (sorted by name) and the errors of the invalid ones, one file at a time.

    A file that cannot be read or parsed only costs its own model; two files naming the same model load neither.
    """
    found: list[tuple[Path, ModelSpec]] = []
    errors: list[SpecError] = []
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
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
