"""Content-addressed storage of labs' grader bundles and starter archives, written by the course import.

Stored twice: as blobs in the database (labs.blobs; what a worker on another host reads) and as a per-host copy,
`DATA_DIR/graders/<digest>/` (read-only files) and `DATA_DIR/starters/<digest>.zip`. The digest names the content
(courses.coursefs.tree_digest), so a stored bundle is never overwritten and an aborted import only leaves
unreferenced, immutable files behind. `grader_materialize` and `starter_materialize` return the local copy,
verified, written from the database when it is missing or does not match.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from courses.coursefs import TreeDigest, tree_digest
from labs.blobs import Entry, Layout, blob_tree_get, blob_tree_materialize, blob_tree_put, blob_tree_read
from labs.errors import PlatformError
from labs.models import BlobTree

logger = logging.getLogger(__name__)

# What grader_store writes: read-only files, executable where the course's file is.
_GRADER_LAYOUT = Layout(
    top_mode=0o700,  # as mkdtemp made it: hidden tests stay unreadable to other users of the host
    dir_mode=0o755,
    file_mode=lambda executable: 0o555 if executable else 0o444,
)


def grader_dir(*, digest: str) -> Path:
    """Where the grader bundle with this digest is stored."""
    return Path(settings.DATA_DIR) / "graders" / _checked(digest)


def starter_path(*, digest: str) -> Path:
    """Where the starter archive with this digest is stored."""
    return Path(settings.DATA_DIR) / "starters" / f"{_checked(digest)}.zip"


def grader_store(*, tree: TreeDigest) -> Path:
    """Copy a grader folder into the database and the local store unless that digest is already stored.
    Never overwrites."""
    _blobs_put(kind=BlobTree.Kind.GRADER, tree=tree)
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
            for folder in target.parents:
                if folder == tmp:
                    break
                folder.chmod(_GRADER_LAYOUT.dir_mode)  # what verification expects, whatever the umask
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


def grader_materialize(*, digest: str) -> Path:
    """The grader bundle on this host, written from the database when missing or not matching it."""
    return blob_tree_materialize(
        kind=BlobTree.Kind.GRADER, digest=digest, dest=grader_dir(digest=digest), layout=_GRADER_LAYOUT
    )


def starter_store(*, tree: TreeDigest) -> Path:
    """Store a starter's files in the database and zip them deterministically into the local store, unless
    already stored."""
    _blobs_put(kind=BlobTree.Kind.STARTER, tree=tree)
    dest = starter_path(digest=tree.digest)
    if dest.exists():
        return dest
    archive = starter_zip(((rel, (tree.root / rel).read_bytes(), executable) for rel, _s, _h, executable in tree.files))
    _starter_write(dest, archive)
    return dest


def starter_materialize(*, digest: str) -> Path:
    """The starter archive on this host, zipped again from the database's files when it is missing or its files
    do not hash to `digest`. Raises PlatformError when the database cannot supply it.

    A verified archive is remembered by this process with its file's (device, inode, size, mtime), and hashed
    again only when one of them changes: a download does not unzip a 100 MiB archive every time."""
    dest = starter_path(digest=digest)
    stored = blob_tree_get(kind=BlobTree.Kind.STARTER, digest=digest)
    if stored is None:
        if dest.is_file():
            return dest  # stored before blobs existed and not backfilled yet: the local copy is all there is
        raise PlatformError(
            f"starter tree {digest} is neither in the database nor at {dest}; import the course again "
            "(manage.py import_course)"
        )
    if _starter_verified(dest, digest):
        return dest
    if dest.exists():
        logger.warning("the local starter archive %s does not match the database; rebuilding it", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Zipped into a temporary file beside dest (not in memory), checked, then renamed over dest.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{digest[:12]}-", suffix=".zip", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as handle:
            # The manifest is sorted by path: the order starter_zip writes in, so the bytes are the same.
            _starter_zip_write(
                handle,
                ((entry["path"], data, bool(entry["executable"])) for entry, data in blob_tree_read(tree=stored)),
            )
            handle.flush()
            handle.seek(0)
            if _zip_digest(handle) != digest:
                raise PlatformError(
                    f"starter tree {digest}: the archive zipped from the database does not hash to its name"
                )
            signature = _signature(os.fstat(handle.fileno()))
        os.replace(tmp, dest)  # a rebuild: whoever renames last, the bytes are the same
    finally:
        tmp.unlink(missing_ok=True)
    _STARTERS_VERIFIED[str(dest)] = signature
    return dest


# This process's verified starter archives: path -> (st_dev, st_ino, st_size, st_mtime_ns) when verified. A file
# changed in place changes its size or mtime; one replaced is another inode.
_STARTERS_VERIFIED: dict[str, tuple[int, int, int, int]] = {}


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _starter_verified(dest: Path, digest: str) -> bool:
    try:
        with dest.open("rb") as handle:
            signature = _signature(os.fstat(handle.fileno()))
            if _STARTERS_VERIFIED.get(str(dest)) == signature:
                return True
            good = _zip_digest(handle) == digest
    except OSError:
        return False
    if good:
        _STARTERS_VERIFIED[str(dest)] = signature
    else:
        _STARTERS_VERIFIED.pop(str(dest), None)
    return good


def starter_zip(files: Iterable[Entry]) -> bytes:
    """A deterministic zip of (path, data, executable) files: the same files always give the same bytes."""
    buffer = io.BytesIO()
    _starter_zip_write(buffer, sorted(files))
    return buffer.getvalue()


def _starter_zip_write(handle: BinaryIO, files: Iterable[Entry]) -> None:
    # In the order given: callers pass the files sorted by path.
    with zipfile.ZipFile(handle, "w") as archive:
        for rel, data, executable in files:
            # Fixed timestamps and modes: the same files always give the same bytes.
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            archive.writestr(info, data, compresslevel=6)


def _zip_digest(handle: BinaryIO) -> str | None:
    # Each member is hashed as it is inflated, a megabyte at a time: never a whole archive or file in memory.
    try:
        with zipfile.ZipFile(handle) as opened:
            files = []
            for info in opened.infolist():
                digest, size = hashlib.sha256(), 0
                with opened.open(info) as member:
                    for chunk in iter(lambda member=member: member.read(1 << 20), b""):
                        digest.update(chunk)
                        size += len(chunk)
                executable = bool((info.external_attr >> 16) & 0o111)
                files.append((info.filename, size, digest.hexdigest(), executable))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return None
    return tree_digest(files)


def _starter_write(dest: Path, archive: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.stem[:12]}-", suffix=".zip", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(archive)
        with contextlib.suppress(FileExistsError):  # another import stored the same archive first
            os.link(tmp, dest)  # link, not rename: it fails rather than overwrite an existing archive
    finally:
        tmp.unlink(missing_ok=True)


def _blobs_put(*, kind: str, tree: TreeDigest) -> None:
    entries = [(rel, (tree.root / rel).read_bytes(), executable) for rel, _size, _sha, executable in tree.files]
    try:
        blob_tree_put(kind=kind, digest=tree.digest, entries=entries)
    except PlatformError:
        raise PlatformError(f"{tree.root} changed while it was being imported; run the import again") from None


def _checked(digest: str) -> str:
    # A digest is part of a path: anything but 64 hex digits could address outside the store.
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        raise PlatformError(f"not a sha256 digest: {digest!r}")
    return digest
