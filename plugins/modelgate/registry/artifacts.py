"""Content-addressed artifact store: local filesystem by default, gs:// through the Google provider.

Models are stored as skops files (`save_model`): loading one runs no pickle and builds only skops' trusted
types and those the version listed when it was registered. What skops can't represent, the drift reference
frames, and every version registered before skops are joblib files, which are pickles: `load` verifies the
sha256 the registry recorded *before* unpickling.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

from modelgate.fileio import copy_atomically
from modelgate.registry.errors import ArtifactIntegrityError, ArtifactNotFound, InvalidInput, UntrustedArtifact

if TYPE_CHECKING:
    from modelgate.registry.entities import ArtifactFormat, ModelVersion

_CHUNK = 1 << 20
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    sha256: str
    size: int
    format: ArtifactFormat = "joblib"
    trusted: tuple[str, ...] = ()  # skops: the types beyond skops' own that loading it may build


@contextmanager
def _skops() -> Iterator[Any]:
    """skops.io, with warnings silenced while it works.

    To name an object without a `__module__` (scipy's ufuncs, ~300 of them when skops.io is first imported)
    skops asks every loaded module for it. In an Airflow worker that reaches Airflow's deprecated module
    aliases, and each one warns: 1,161 log lines over 6.5 s of a training task in the system suite. What is
    found is the same; only the warnings go (the search itself still costs ~2.5 s a process here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import skops.io as sio

        yield sio


def model_bytes(obj: Any) -> tuple[bytes, tuple[str, ...]] | None:
    """`obj` as a skops file and the types beyond skops' own it holds, or None when skops can't represent it
    (or can't read back what it wrote): the caller keeps joblib for that model."""
    try:
        with _skops() as sio:
            data = sio.dumps(obj)
            trusted = tuple(sorted(sio.get_untrusted_types(data=data)))
            sio.loads(data, trusted=list(trusted))
    except Exception as exc:  # skops raises TypeError, NotImplementedError, and whatever a custom type's state does
        log.warning("skops cannot store %s (%s: %s): keeping it as joblib", type(obj).__name__, type(exc).__name__, exc)
        return None
    return data, trusted


def load_model_bytes(data: bytes, *, format: ArtifactFormat, trusted: Sequence[str] = (), what: str) -> Any:
    """Build a model from verified bytes: skops with only `trusted` beyond its own types, or joblib (a pickle:
    call this only on bytes whose sha256 matched the registry's). A model made by your own factory may hold
    classes of its module: the include folder is importable."""
    from modelgate.config import importable_include

    importable_include()
    if format == "skops":
        with _skops() as sio:
            from skops.io.exceptions import UntrustedTypesFoundException

            try:
                return sio.loads(data, trusted=list(trusted))
            except UntrustedTypesFoundException as exc:
                found = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted))
                raise UntrustedArtifact(
                    f"{what} holds {', '.join(found)}, which its version did not list as trusted when it was "
                    "registered: refusing to load it (register the model again to record its types)"
                ) from exc
    if format != "joblib":
        raise InvalidInput(f"unknown artifact format {format!r} for {what}: use joblib or skops")
    import joblib

    return joblib.load(io.BytesIO(data))


class GCSHookLike(Protocol):
    """The part of airflow.providers.google's GCSHook the store uses (so tests can fake the boundary)."""

    def upload(
        self, bucket_name: str, object_name: str, filename: str | None = None, data: str | bytes | None = None
    ) -> Any: ...

    def download(self, bucket_name: str, object_name: str, filename: str | None = None) -> Any: ...

    def exists(self, bucket_name: str, object_name: str) -> bool: ...

    def list(self, bucket_name: str, prefix: str | None = None) -> Any: ...


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _dump_to_temp(obj: Any, directory: Path) -> Path:
    import joblib

    from modelgate.fileio import WriteFailed, temporary_file

    path = temporary_file(directory, what="a model artifact", prefix=".upload-", suffix=".joblib")
    try:
        joblib.dump(obj, path)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise WriteFailed(f"cannot write a model artifact to {directory}: {exc.strerror or exc}") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _content_key(sha256: str, suffix: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256}{suffix}"


class ArtifactStore:
    """Save objects or files under their own sha256; load only what matches the expected sha256."""

    def __init__(self, root: str, *, gcs_hook: GCSHookLike | None = None, gcp_conn_id: str = "google_cloud_default"):
        self.root = root
        self._gcs_hook = gcs_hook
        self._gcp_conn_id = gcp_conn_id
        parsed = urlparse(root)
        self._is_gcs = parsed.scheme == "gs"
        if self._is_gcs:
            if not parsed.netloc:
                raise InvalidInput(f"artifact root {root!r} names no bucket")
            self._bucket = parsed.netloc
            self._prefix = parsed.path.strip("/")
        else:
            self._local_root = Path(root[7:] if root.startswith("file://") else root).expanduser().resolve()

    # -- writing

    def save(self, obj: Any, *, suffix: str = ".joblib") -> StoredArtifact:
        """Serialize `obj` with joblib and store it content-addressed."""
        staging = self._staging_dir()
        tmp = _dump_to_temp(obj, staging)
        try:
            return self.save_file(tmp, suffix=suffix)
        finally:
            tmp.unlink(missing_ok=True)

    def save_models(self, *models: Any) -> tuple[StoredArtifact, ...]:
        """Store one version's fitted models (served, and the holdout fit) as skops files, each with the types
        all of them hold beyond skops' own (recorded with the version: the only ones loading may build); all as
        joblib when skops can't represent one of them, so a version has one format."""
        from modelgate.fileio import WriteFailed, temporary_file

        encoded = [model_bytes(model) for model in models]
        if any(e is None for e in encoded):
            return tuple(self.save(model) for model in models)
        trusted = tuple(sorted({name for e in encoded if e is not None for name in e[1]}))
        staging = self._staging_dir()
        out = []
        for e in encoded:
            assert e is not None  # (checked above)
            tmp = temporary_file(staging, what="a model artifact", prefix=".upload-", suffix=".skops")
            try:
                try:
                    tmp.write_bytes(e[0])
                except OSError as exc:
                    raise WriteFailed(f"cannot write a model artifact to {staging}: {exc.strerror or exc}") from None
                stored = self.save_file(tmp, suffix=".skops")
            finally:
                tmp.unlink(missing_ok=True)
            out.append(replace(stored, format="skops", trusted=trusted))
        return tuple(out)

    def save_file(self, path: str | os.PathLike[str], *, suffix: str | None = None) -> StoredArtifact:
        """Copy an existing file (e.g. a user's own joblib model) into the store."""
        source = Path(path)
        if not source.is_file():
            raise ArtifactNotFound(f"no file at {source}")
        sha, size = sha256_file(source)
        key = _content_key(sha, suffix if suffix is not None else (source.suffix or ".bin"))
        if self._is_gcs:
            object_name = f"{self._prefix}/{key}" if self._prefix else key
            hook = self._hook()
            if not hook.exists(self._bucket, object_name):
                hook.upload(bucket_name=self._bucket, object_name=object_name, filename=str(source))
            return StoredArtifact(f"gs://{self._bucket}/{object_name}", sha, size)
        target = self._local_root / key
        if not target.exists():  # content-addressed: atomic, so readers never see a half-written artifact
            copy_atomically(source, target, what=f"artifact {source.name}")
        return StoredArtifact(target.as_uri(), sha, size)

    # -- reading

    def fetch(self, uri: str, expected_sha256: str) -> bytes:
        """The artifact's bytes, verified against `expected_sha256`."""
        data = self._read_bytes(uri)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise ArtifactIntegrityError(
                f"artifact {uri} has sha256 {actual}, the registry recorded {expected_sha256}: refusing to load it"
            )
        return data

    def load(
        self, uri: str, expected_sha256: str, *, format: ArtifactFormat = "joblib", trusted: Sequence[str] = ()
    ) -> Any:
        """Load an artifact only after its checksum matched the registry's record (`load_model_bytes`)."""
        data = self.fetch(uri, expected_sha256)
        return load_model_bytes(data, format=format, trusted=trusted, what=f"artifact {uri}")

    def load_version(self, version: ModelVersion, *, evaluation: bool = False) -> Any:
        """A version's served model (or, with `evaluation`, the one to score on a holdout: the fit without it
        when the served model was refit), in its recorded format, refusing types its version did not list."""
        uri, sha256 = version.evaluation_artifact if evaluation else (version.artifact_uri, version.artifact_sha256)
        return self.load(uri, sha256, format=version.artifact_format, trusted=version.trusted_types)

    def _read_bytes(self, uri: str) -> bytes:
        parsed = urlparse(uri)
        if parsed.scheme == "gs":
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / "artifact"
                hook = self._hook()
                try:
                    hook.download(bucket_name=parsed.netloc, object_name=parsed.path.lstrip("/"), filename=str(local))
                except Exception as exc:  # the provider raises google.api_core NotFound and friends
                    if type(exc).__name__ == "NotFound":
                        raise ArtifactNotFound(f"no artifact at {uri}") from exc
                    raise
                return local.read_bytes()
        if parsed.scheme in ("file", ""):
            path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
            if not path.is_file():
                raise ArtifactNotFound(f"no artifact at {uri}")
            return path.read_bytes()
        raise InvalidInput(f"unsupported artifact URI scheme {parsed.scheme!r} in {uri}")

    def _staging_dir(self) -> Path:
        if self._is_gcs:
            return Path(tempfile.gettempdir())
        return self._local_root / ".staging"

    def _hook(self) -> GCSHookLike:
        if self._gcs_hook is None:
            from airflow.providers.google.cloud.hooks.gcs import GCSHook

            hook: GCSHookLike = GCSHook(gcp_conn_id=self._gcp_conn_id)  # type: ignore[assignment]
            self._gcs_hook = hook
            return hook
        return self._gcs_hook


def default_artifact_store() -> ArtifactStore:
    """The store named by $MODELGATE_ARTIFACT_ROOT, else <MODELGATE_HOME>/artifacts."""
    from modelgate.config import artifact_root

    return ArtifactStore(artifact_root())
