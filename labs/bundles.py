"""Content-addressed storage of labs' grader bundles and starter archives, written by the course import.

Layout: `DATA_DIR/graders/<digest>/` (read-only files) and `DATA_DIR/starters/<digest>.zip`. The digest names
the content (courses.coursefs.tree_digest), so a stored bundle is never overwritten and an aborted import
only leaves unreferenced, immutable files behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from django.conf import settings

from courses.coursefs import TreeDigest, tree_digest
from labs.errors import PlatformError


def grader_dir(*, digest: str) -> Path:
    """Where the grader bundle with this digest is stored."""
    return Path(settings.DATA_DIR) / "graders" / _checked(digest)


def starter_path(*, digest: str) -> Path:
    """Where the starter archive with this digest is stored."""
    return Path(settings.DATA_DIR) / "starters" / f"{_checked(digest)}.zip"


def grader_store(*, tree: TreeDigest) -> Path:
    """Copy a grader folder into the store unless that digest is already stored. Never overwrites."""
    dest = grader_dir(digest=tree.digest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{tree.digest[:12]}-", dir=dest.parent))
    try:
        copied = []
        for rel, size, _sha, executable in tree.files:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tree.root / rel, target)
            target.chmod(0o555 if executable else 0o444)
            copied.append((rel, size, hashlib.sha256(target.read_bytes()).hexdigest(), executable))
        if tree_digest(copied) != tree.digest:
            raise PlatformError(f"{tree.root} changed while it was being imported; run the import again")
        try:
            tmp.rename(dest)
        except OSError:
            # Another import stored the same digest first: same content, keep theirs.
            if not dest.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def starter_store(*, tree: TreeDigest) -> Path:
    """Zip a starter folder deterministically into the store unless already stored."""
    dest = starter_path(digest=tree.digest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{tree.digest[:12]}-", suffix=".zip", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
            for rel, _size, _sha, executable in sorted(tree.files):
                # Fixed timestamps and modes: the same files always give the same bytes.
                info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3
                info.external_attr = (0o100755 if executable else 0o100644) << 16
                archive.writestr(info, (tree.root / rel).read_bytes(), compresslevel=6)
        with contextlib.suppress(FileExistsError):  # another import stored the same archive first
            os.link(tmp, dest)  # link, not rename: it fails rather than overwrite an existing archive
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _checked(digest: str) -> str:
    # A digest is part of a path: anything but 64 hex digits could address outside the store.
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        raise PlatformError(f"not a sha256 digest: {digest!r}")
    return digest
