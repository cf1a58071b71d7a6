"""Where reports live: a local folder, or `gs://bucket/prefix` through the Google provider's GCSHook.

Tasks always write a report to a local folder first (GX and Evidently write files); `publish` then copies it
(or a Data Docs folder) into the store and answers the location to record. The api-server reads reports back
by their path relative to the store's root, and only there: a relative path that climbs out (`..`), an
absolute one, or (locally) a link pointing outside is not found.
"""

from __future__ import annotations

import mimetypes
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelgate.registry.artifacts import GCSHookLike

REPORTS_DIR_ENV = "MODELGATE_REPORTS_DIR"


@dataclass(frozen=True)
class Report:
    content: bytes
    media_type: str


@dataclass(frozen=True)
class ReportStore:
    root: str  # a local folder, or gs://bucket[/prefix]
    staging: Path | None = None  # where a gs:// store's tasks write before publishing (default: under home)
    gcp_conn_id: str = "google_cloud_default"
    gcs_hook: GCSHookLike | None = None  # tests hand a fake in; else GCSHook(gcp_conn_id) when first used

    @classmethod
    def from_env(cls) -> ReportStore:
        """$MODELGATE_REPORTS_DIR, else $MODELGATE_HOME/reports."""
        from modelgate.config import modelgate_home

        return cls(os.environ.get(REPORTS_DIR_ENV) or str(modelgate_home() / "reports"))

    @property
    def remote(self) -> bool:
        return self.root.startswith("gs://")

    @property
    def local_dir(self) -> Path:
        """The folder reports are written to (the store itself when it is local)."""
        if not self.remote:
            return Path(self.root)
        if self.staging is not None:
            return self.staging
        from modelgate.config import modelgate_home

        return modelgate_home() / "reports-staging"

    def _bucket_prefix(self) -> tuple[str, str]:
        bucket, _, prefix = self.root.removeprefix("gs://").partition("/")
        return bucket, prefix.strip("/")

    def _hook(self) -> GCSHookLike:
        if self.gcs_hook is not None:
            return self.gcs_hook
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        hook: GCSHookLike = GCSHook(gcp_conn_id=self.gcp_conn_id)  # type: ignore[assignment]
        return hook

    def _object(self, relative: str) -> str:
        bucket, prefix = self._bucket_prefix()
        return f"{prefix}/{relative}" if prefix else relative

    def publish(self, written: Path) -> str:
        """Copy a report file (or a folder of them) written under `local_dir` into the store; its location."""
        if not self.remote:
            return str(written)
        relative = written.resolve().relative_to(self.local_dir.resolve()).as_posix()
        bucket, _ = self._bucket_prefix()
        files = [written] if written.is_file() else sorted(p for p in written.rglob("*") if p.is_file())
        for file in files:
            name = file.resolve().relative_to(self.local_dir.resolve()).as_posix()
            self._hook().upload(bucket_name=bucket, object_name=self._object(name), filename=str(file))
        return f"gs://{bucket}/{self._object(relative)}"

    def relative(self, location: str) -> str | None:
        """The path of a recorded location inside the store, or None when it is elsewhere."""
        if self.remote:
            root = self.root.rstrip("/") + "/"
            if not location.startswith(root):
                return None
            return _safe(location[len(root) :])
        if "://" in location:
            return None
        try:
            return Path(location).resolve().relative_to(Path(self.root).resolve()).as_posix()
        except ValueError:
            return None

    def read(self, relative: str) -> Report | None:
        """A report by its path inside the store; None when it is not a report inside the store."""
        safe = _safe(relative)
        if safe is None:
            return None
        media_type = mimetypes.guess_type(safe)[0] or "application/octet-stream"
        if not self.remote:
            found = contained(Path(self.root), safe)
            return None if found is None else Report(found.read_bytes(), media_type)
        bucket, _ = self._bucket_prefix()
        if not self._hook().exists(bucket_name=bucket, object_name=self._object(safe)):
            return None
        data: Any = self._hook().download(bucket_name=bucket, object_name=self._object(safe))
        return Report(data if isinstance(data, bytes) else str(data).encode(), media_type)

    def first_page(self, folder: str) -> str | None:
        """The first Data Docs validation page under `folder` (a path inside the store), if any."""
        safe = _safe(folder)
        if safe is None:
            return None
        if not self.remote:
            root = Path(self.root)
            base = root / safe
            try:
                found = sorted(base.glob("validations/**/*.html")) if base.is_dir() else []
            except OSError:
                return None
            for page in found:  # a page (or folder) that is a link out of the store is not a page of it
                inside = contained(root, page.relative_to(root).as_posix())
                if inside is not None:
                    return inside.relative_to(root.resolve()).as_posix()
            return None
        bucket, prefix = self._bucket_prefix()
        start = self._object(f"{safe}/validations/")
        names = sorted(n for n in self._hook().list(bucket, prefix=start) if n.endswith(".html"))
        if not names:
            return None
        return names[0][len(prefix) + 1 :] if prefix else names[0]


def _safe(relative: str) -> str | None:
    """A normalised relative POSIX path that stays inside the root, or None."""
    if not relative or relative.startswith(("/", "\\")) or "\\" in relative or "\x00" in relative:
        return None
    normal = posixpath.normpath(relative)
    if normal in (".", "..") or normal.startswith("../"):
        return None
    return normal


def contained(root: Path, relative: str) -> Path | None:
    """The file `relative` names under `root`, or None when it is not a file inside root (.., links, absolute)."""
    base = root.resolve()
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError):
        return None
    if target != base and base not in target.parents:
        return None
    return target if target.is_file() else None
