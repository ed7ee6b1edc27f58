"""Files every host can read: submitted trees, grader bundles and starters stored as blobs in the database.

The database is the one store every host shares (a worker on another host shares only it and Redis with the web
host), so a tree's files are written there as `Blob` rows, one per content, plus one `BlobTree` row listing them,
in the same transaction as whatever refers to the tree (a submit's Revision). The folders under DATA_DIR and
SUBMISSIONS_ROOT are per-host caches: `blob_tree_materialize` writes a tree there on first use, verifying every
file's sha256 and the tree's digest, into a temporary folder renamed into place (two workers on one host may
materialize the same tree at once; each sees a whole tree). A local copy that no longer matches the database's
manifest is rebuilt. Where a tree lives on disk and with which modes belongs to labs.storage and labs.bundles.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from courses.coursefs import tree_digest as bundle_tree_digest
from labs.errors import PlatformError
from labs.models import Blob, BlobTree
from labs.uploads import tree_digest as upload_tree_digest

logger = logging.getLogger(__name__)

Entry = tuple[str, bytes, bool]  # (path, data, executable)
# One INSERT carries at most this many bytes of blobs (a grader file may be 20 MiB; a batch must stay sendable).
INSERT_BATCH_BYTES = 16 * 1024 * 1024
_LOOKUP_CHUNK = 500  # stays below SQLite's bound-parameter limit
RUNBOOK = "docs/runbook.md, 'A stored file is missing or corrupt'"


@dataclass(frozen=True)
class Layout:
    """How one kind of tree sits on a host's disk: its files under `dest/files_subdir`, these modes, and extra
    files (a manifest) written beside them, named relative to `dest`."""

    files_subdir: str = ""
    top_mode: int = 0o755
    dir_mode: int = 0o755
    file_mode: Callable[[bool], int] = lambda executable: 0o644
    extra_names: tuple[str, ...] = ()
    extra_files: Callable[[BlobTree], dict[str, bytes]] = field(default=lambda tree: {})  # {name in extra_names: bytes}
    check_executable: bool = False  # whether a local file's executable bit must match the manifest


def tree_digest_of(*, kind: str, manifest: Sequence[dict[str, Any]]) -> str:
    """The digest naming a tree of this kind: labs.uploads' for submissions, courses.coursefs' for bundles."""
    if kind == BlobTree.Kind.SUBMISSION:
        return upload_tree_digest([(f["path"], f["sha256"]) for f in manifest])
    return bundle_tree_digest([(f["path"], f["size"], f["sha256"], bool(f["executable"])) for f in manifest])


def blob_tree_put(*, kind: str, digest: str, entries: Sequence[Entry]) -> BlobTree:
    """Store a tree's files and its row unless already stored; idempotent, the same content is stored once.

    Runs in the caller's transaction when there is one (a submit), so a rolled-back caller leaves no tree.
    Refuses entries whose digest is not `digest`: a tree row always names exactly its files. Blobs missing under
    an existing tree row are stored again, so putting a tree again from a good copy repairs it (docs/runbook.md)."""
    data_by_sha = {hashlib.sha256(data).hexdigest(): data for _path, data, _x in entries}
    manifest = sorted(
        (
            {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "executable": bool(x)}
            for path, data, x in entries
        ),
        key=lambda f: f["path"],
    )
    actual = tree_digest_of(kind=kind, manifest=manifest)
    if actual != digest:
        raise PlatformError(f"{kind} tree {digest}: its files hash to {actual}, not to its name; nothing was stored")
    with transaction.atomic():
        shas = list(data_by_sha)
        stored: set[str] = set()
        for start in range(0, len(shas), _LOOKUP_CHUNK):
            chunk = shas[start : start + _LOOKUP_CHUNK]
            stored.update(Blob.objects.filter(sha256__in=chunk).values_list("sha256", flat=True))
        batch: list[Blob] = []
        batch_bytes = 0
        for sha, data in data_by_sha.items():
            if sha in stored:
                continue
            if batch and batch_bytes + len(data) > INSERT_BATCH_BYTES:
                Blob.objects.bulk_create(batch, ignore_conflicts=True)
                batch, batch_bytes = [], 0
            batch.append(Blob(sha256=sha, size=len(data), data=data))
            batch_bytes += len(data)
        if batch:
            # A concurrent writer of the same content may win; its bytes are the same, so ignore the conflict.
            Blob.objects.bulk_create(batch, ignore_conflicts=True)
        existing = BlobTree.objects.filter(kind=kind, digest=digest).first()
        if existing is not None:
            return existing
        BlobTree.objects.bulk_create(
            [BlobTree(kind=kind, digest=digest, manifest=manifest, total_bytes=sum(f["size"] for f in manifest))],
            ignore_conflicts=True,
        )
        return BlobTree.objects.get(kind=kind, digest=digest)


def blob_tree_get(*, kind: str, digest: str) -> BlobTree | None:
    return BlobTree.objects.filter(kind=kind, digest=digest).first()


def blob_tree_missing(*, tree: BlobTree) -> list[str]:
    """The paths of the tree's files whose blob is not in the database."""
    shas = sorted({entry["sha256"] for entry in tree.manifest})
    present: set[str] = set()
    for start in range(0, len(shas), _LOOKUP_CHUNK):
        chunk = shas[start : start + _LOOKUP_CHUNK]
        present.update(Blob.objects.filter(sha256__in=chunk).values_list("sha256", flat=True))
    return [entry["path"] for entry in tree.manifest if entry["sha256"] not in present]


def blob_tree_read(*, tree: BlobTree) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Each file of the tree with its bytes, one blob at a time, every one verified against the manifest (and the
    manifest against the tree's digest). A missing or corrupt blob raises PlatformError naming the file."""
    if tree_digest_of(kind=tree.kind, manifest=tree.manifest) != tree.digest:
        raise PlatformError(f"{_name(tree)}: its manifest in the database does not hash to its name; {_action(tree)}")
    for entry in tree.manifest:
        raw = Blob.objects.filter(sha256=entry["sha256"]).values_list("data", flat=True).first()
        if raw is None:
            raise PlatformError(
                f"{_name(tree)}: the blob of {entry['path']!r} (sha256 {entry['sha256']}) is missing from the "
                f"database; {_action(tree)}"
            )
        data = bytes(raw)  # PostgreSQL hands back a memoryview
        actual = hashlib.sha256(data).hexdigest()
        if actual != entry["sha256"] or len(data) != entry["size"]:
            raise PlatformError(
                f"{_name(tree)}: the blob of {entry['path']!r} is corrupt in the database (sha256 {actual}, "
                f"{len(data)} bytes; the manifest says {entry['sha256']}, {entry['size']} bytes); {_action(tree)}"
            )
        yield entry, data


def blob_tree_local_problem(*, tree: BlobTree, files_root: Path, check_executable: bool = False) -> str | None:
    """Why the folder does not hold exactly the tree's files (an extra, missing or changed file), or None."""
    if not files_root.is_dir() or files_root.is_symlink():
        return f"{files_root} is missing"
    expected = {entry["path"]: entry for entry in tree.manifest}
    seen: set[str] = set()
    for folder, dirnames, filenames in os.walk(files_root):
        here = Path(folder)
        for name in [*filenames, *(d for d in dirnames if (here / d).is_symlink())]:
            path = here / name
            rel = path.relative_to(files_root).as_posix()
            entry = expected.get(rel)
            if entry is None:
                return f"{rel!r} is not part of the tree"
            st = path.lstat()
            if not path.is_file() or path.is_symlink():
                return f"{rel!r} is not a regular file"
            if st.st_size != entry["size"]:
                return f"{rel!r} has {st.st_size} bytes, not {entry['size']}"
            if check_executable and bool(st.st_mode & 0o111) != bool(entry.get("executable")):
                return f"{rel!r} has the wrong executable bit"
            if _file_sha256(path) != entry["sha256"]:
                return f"{rel!r} does not match its sha256"
            seen.add(rel)
    missing = sorted(expected.keys() - seen)
    return f"{missing[0]!r} is missing" if missing else None


def blob_tree_materialize(*, kind: str, digest: str, dest: Path, layout: Layout) -> Path:
    """The local folder holding the tree's files (`dest`/`layout.files_subdir`), written from the database when
    it is missing or does not match the database's manifest. Raises PlatformError when the database cannot
    supply it (no tree row and no local copy, or a missing or corrupt blob)."""
    files_root = dest / layout.files_subdir if layout.files_subdir else dest
    tree = blob_tree_get(kind=kind, digest=digest)
    if tree is None:
        # Stored before blobs existed and not uploaded yet (manage.py blobs_backfill): the local copy is all there is.
        if files_root.is_dir() and _extras_present(dest, layout):
            return files_root
        raise PlatformError(f"{kind} tree {digest} is neither in the database nor at {dest}; {_action_for(kind)}")
    problem = _local_problem(tree, dest, files_root, layout)
    if problem is None:
        return files_root
    if dest.exists():
        logger.warning("the local copy of %s does not match the database (%s); rebuilding it", _name(tree), problem)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=dest.parent))
    aside: Path | None = None
    try:
        os.chmod(tmp, layout.top_mode)
        root = tmp / layout.files_subdir if layout.files_subdir else tmp
        root.mkdir(mode=layout.dir_mode, exist_ok=True)
        os.chmod(root, layout.dir_mode if layout.files_subdir else layout.top_mode)
        for entry, data in blob_tree_read(tree=tree):
            target = _inside(root, entry["path"])
            _mkdirs(target.parent, root, layout.dir_mode)
            _write_file(target, data, layout.file_mode(bool(entry.get("executable"))))
        for name, data in layout.extra_files(tree).items():
            _write_file(_inside(tmp, name), data, 0o644)
        # No fsync: every reader verifies the copy against the database, and a torn one is rebuilt.
        if dest.exists() or dest.is_symlink():
            if _local_problem(tree, dest, files_root, layout) is None:
                return files_root  # another worker just materialized it
            aside = dest.parent / f".stale-{digest[:12]}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(dest, aside)
            except FileNotFoundError:
                aside = None  # another worker moved it first
        try:
            os.rename(tmp, dest)
        except OSError:
            # Another worker renamed its copy into place first: the same verified bytes, keep theirs.
            if _local_problem(tree, dest, files_root, layout) is not None:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    return files_root


def _local_problem(tree: BlobTree, dest: Path, files_root: Path, layout: Layout) -> str | None:
    if not _extras_present(dest, layout):
        return f"{dest} lacks its manifest"
    return blob_tree_local_problem(tree=tree, files_root=files_root, check_executable=layout.check_executable)


def _extras_present(dest: Path, layout: Layout) -> bool:
    return all((dest / name).is_file() for name in layout.extra_names)


def _name(tree: BlobTree) -> str:
    return f"{tree.kind} tree {tree.digest}"


def _action(tree: BlobTree) -> str:
    return _action_for(tree.kind)


def _action_for(kind: str) -> str:
    if kind == BlobTree.Kind.SUBMISSION:
        return f"see {RUNBOOK}"
    return f"import the course again (manage.py import_course) to store it again; see {RUNBOOK}"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _inside(base: Path, relative: str) -> Path:
    # A manifest path is data: never let one address outside the folder being written.
    target = (base / relative).resolve()
    if not target.is_relative_to(base.resolve()) or target == base.resolve():
        raise PlatformError(f"refusing to write {relative!r} outside {base}")
    return target


def _mkdirs(path: Path, base: Path, mode: int) -> None:
    missing = []
    current = path
    while current != base and not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=mode)
        os.chmod(folder, mode)  # mkdir's mode is filtered by the umask


def _write_file(target: Path, data: bytes, mode: int) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
