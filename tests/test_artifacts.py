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


def _boosted() -> object:
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    return HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x, (x[:, 0] > 0).astype(int))


def test_models_are_stored_as_skops_with_the_types_they_hold(tmp_path: Path) -> None:
    """A version's served model and its holdout fit: one format, one list of trusted types, loading without
    unpickling (a skops file is a zip of JSON and arrays, not a pickle)."""
    import numpy as np

    store = ArtifactStore(str(tmp_path))
    served, holdout = store.save_models(_boosted(), _model())
    assert (served.format, holdout.format) == ("skops", "skops")
    assert served.uri.endswith(".skops") and Path(served.uri.removeprefix("file://")).read_bytes()[:2] == b"PK"
    tree = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
    assert served.trusted == holdout.trusted == (tree,)  # the union: LogisticRegression holds nothing beyond skops'
    loaded = store.load(served.uri, served.sha256, format="skops", trusted=served.trusted)
    np.testing.assert_array_equal(loaded.predict_proba(np.eye(3)), _boosted().predict_proba(np.eye(3)))  # type: ignore[attr-defined]
    assert store.load(holdout.uri, holdout.sha256, format="skops").predict([[3.0]]).tolist() == [1]


def test_a_type_its_version_did_not_list_is_refused(tmp_path: Path) -> None:
    from modelgate.registry.errors import UntrustedArtifact

    store = ArtifactStore(str(tmp_path))
    (stored,) = store.save_models(_boosted())
    with pytest.raises(UntrustedArtifact, match=r"holds sklearn\.ensemble\..*TreePredictor, which its version did not"):
        store.load(stored.uri, stored.sha256, format="skops", trusted=())
    assert isinstance(UntrustedArtifact("x"), ArtifactIntegrityError)  # callers that refuse tampering refuse this too


class Cleaner:
    """A step of a team's own holding a compiled regex: pickle stores it, skops has no way to."""

    def __init__(self) -> None:
        import re

        self.pattern = re.compile(r"\s+")


def test_what_skops_cannot_store_stays_joblib_for_the_whole_version(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    served, holdout = store.save_models(_model(), Cleaner())
    assert (served.format, holdout.format) == ("joblib", "joblib") and served.trusted == ()
    assert store.load(served.uri, served.sha256).predict([[3.0]]).tolist() == [1]


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    stored = store.save(_model())
    with pytest.raises(InvalidInput, match="unknown artifact format 'onnx'"):
        store.load(stored.uri, stored.sha256, format="onnx")  # type: ignore[arg-type]
