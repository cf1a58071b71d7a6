"""Content-addressed artifacts: local and gs:// (fake at the GCSHook boundary); tampering refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

from modelgate.registry import ArtifactIntegrityError, ArtifactNotFound, ArtifactStore, InvalidInput
from tests.fakes.gcs import FakeGCS


def _model() -> LogisticRegression:
    return LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])


def test_local_save_is_content_addressed_and_loads_back(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    stored = store.save(_model())
    path = Path(stored.uri.removeprefix("file://"))
    assert path.is_file() and stored.sha256 in path.name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == stored.sha256
    assert stored.size == path.stat().st_size
    assert store.save_file(path).uri == stored.uri  # same bytes, same place
    loaded = store.load(stored.uri, stored.sha256)
    assert loaded.predict([[3.0]]).tolist() == [1]
    assert not list((tmp_path / "artifacts" / ".staging").glob("*"))  # no temp file left behind


def test_tampered_artifact_is_refused_before_unpickling(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    stored = store.save(_model())
    path = Path(stored.uri.removeprefix("file://"))
    path.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")  # a malicious pickle
    with pytest.raises(ArtifactIntegrityError, match=f"the registry recorded {stored.sha256}: refusing to load"):
        store.load(stored.uri, stored.sha256)


def test_missing_artifact_and_bad_scheme(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(ArtifactNotFound, match="no artifact at"):
        store.load((tmp_path / "nope.joblib").as_uri(), "0" * 64)
    with pytest.raises(InvalidInput, match="unsupported artifact URI scheme 's3'"):
        store.load("s3://bucket/x", "0" * 64)
    with pytest.raises(ArtifactNotFound, match="no file at"):
        store.save_file(tmp_path / "missing.joblib")


def test_gcs_store_through_the_hook(tmp_path: Path) -> None:
    hook = FakeGCS(tmp_path / "gcs")
    store = ArtifactStore("gs://models-bucket/modelgate", gcs_hook=hook)
    stored = store.save(_model())
    assert stored.uri.startswith(f"gs://models-bucket/modelgate/sha256/{stored.sha256[:2]}/{stored.sha256}")
    store.save(_model())  # already there: no second upload
    assert len(hook.uploads) == 1
    assert store.load(stored.uri, stored.sha256).predict([[0.0]]).tolist() == [0]
    blob = tmp_path / "gcs" / "models-bucket" / stored.uri.removeprefix("gs://models-bucket/")
    blob.write_bytes(blob.read_bytes() + b"x")
    with pytest.raises(ArtifactIntegrityError, match="refusing to load"):
        store.load(stored.uri, stored.sha256)
    with pytest.raises(ArtifactNotFound, match="no artifact at gs://models-bucket/missing"):
        store.load("gs://models-bucket/missing", stored.sha256)


def test_gcs_root_needs_a_bucket() -> None:
    with pytest.raises(InvalidInput, match="names no bucket"):
        ArtifactStore("gs:///prefix")
