"""A fake Google Cloud Storage at the GCSHook boundary: buckets are folders of a temp dir.

It has the signatures of the provider's GCSHook methods modelgate calls, so a test can hand an instance to
ArtifactStore, or patch GCSHook's methods to delegate here when the code under test builds its own hook.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from google.api_core.exceptions import NotFound


class FakeGCS:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploads: list[str] = []

    def path(self, bucket: str, name: str) -> Path:
        return self.root / bucket / name

    def path_of(self, uri: str) -> Path:
        """The file behind a gs://bucket/object URI."""
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        return self.path(bucket, name)

    def exists(self, bucket_name: str, object_name: str, retry: Any = None) -> bool:
        return self.path(bucket_name, object_name).is_file()

    def upload(
        self,
        bucket_name: str,
        object_name: str,
        filename: str | None = None,
        data: str | bytes | None = None,
        **_: Any,
    ) -> None:
        target = self.path(bucket_name, object_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if filename is not None:
            shutil.copyfile(filename, target)
        elif data is not None:
            target.write_bytes(data.encode() if isinstance(data, str) else data)
        else:
            raise ValueError("upload needs filename or data")
        self.uploads.append(f"gs://{bucket_name}/{object_name}")

    def download(self, bucket_name: str, object_name: str, filename: str | None = None, **_: Any) -> Any:
        source = self.path(bucket_name, object_name)
        if not source.is_file():
            raise NotFound(f"No such object: {bucket_name}/{object_name}")
        if filename is None:
            return source.read_bytes()
        shutil.copyfile(source, filename)
        return filename

    def list(self, bucket_name: str, prefix: str | None = None, **_: Any) -> list[str]:
        base = self.root / bucket_name
        if not base.is_dir():
            return []
        names = sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
        return [n for n in names if prefix is None or n.startswith(prefix)]


def patch_gcs_hook(monkeypatch: Any, fake: FakeGCS) -> None:
    """Make every GCSHook the code under test builds read and write `fake`."""
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    for method in ("exists", "upload", "download", "list"):
        monkeypatch.setattr(GCSHook, method, lambda self, *a, _m=method, **kw: getattr(fake, _m)(*a, **kw))
