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

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.db import transaction

from courses.coursefs import file_sha256
from courses.coursefs import tree_digest as bundle_tree_digest
from labs.errors import PlatformError
from labs.models import Blob, BlobTree
from labs.uploads import tree_digest as upload_tree_digest

logger = logging.getLogger(__name__)

Entry = tuple[str, bytes, bool]  # (path, data, executable)
# One INSERT carries at most this many bytes of blobs (a grader file may be 20 MiB; a batch must stay sendable).
INSERT_BATCH_BYTES = 16 * 1024 * 1024
_LOOKUP_CHUNK = 500  # stays below SQLite's bound-parameter limit
# One SELECT of blob_tree_read fetches at most this many bytes (by the manifest's sizes; a bigger file goes alone).
READ_BATCH_BYTES = 16 * 1024 * 1024
# What a per-host cache folder may hold besides trees: set-aside copies, temporaries, lock files (see caches_sweep).
_SWEPT = re.compile(r"^\.(stale-|incoming-|[0-9a-f]{12}-)")
_LOCK = re.compile(r"^\..+\.lock$")
RUNBOOK = "docs/runbook.md, 'A stored file is missing or corrupt'"


@dataclass(frozen=True)
class Layout:
    """How one kind of tree sits on a host's disk: its files under `dest/files_subdir`, these modes (checked on
    every verification: a copy whose modes differ is rebuilt), and extra files (a manifest) written beside them,
    named relative to `dest`."""

    files_subdir: str = ""
    top_mode: int = 0o755
    dir_mode: int = 0o755
    file_mode: Callable[[bool], int] = lambda executable: 0o644
    extra_names: tuple[str, ...] = ()
    extra_files: Callable[[BlobTree], dict[str, bytes]] = field(default=lambda tree: {})  # {name in extra_names: bytes}


def tree_digest_of(*, kind: str, manifest: Sequence[dict[str, Any]]) -> str:
    """The digest naming a tree of this kind: labs.uploads' for submissions, courses.coursefs' for bundles."""
    if kind == BlobTree.Kind.SUBMISSION:
        return upload_tree_digest([(f["path"], f["sha256"]) for f in manifest])
    return bundle_tree_digest([(f["path"], f["size"], f["sha256"], bool(f["executable"])) for f in manifest])


def blob_tree_put(*, kind: str, digest: str, entries: Sequence[Entry]) -> BlobTree:
    """Store a tree's files and its row unless already stored; idempotent, the same content is stored once.

    Runs in the caller's transaction when there is one (a submit), so a rolled-back caller leaves no tree.
    Refuses entries whose digest is not `digest` (a tree row always names exactly its files) and paths that are not
    plain relative ones (`a/./b.py`, `../x`, `/x`, `a//b`). Blobs missing under an existing tree row are stored
    again, so putting a tree again from a good copy repairs it (docs/runbook.md)."""
    for path, _data, _x in entries:
        _path_check(kind=kind, digest=digest, path=path)
    hashed = [(path, data, bool(x), hashlib.sha256(data).hexdigest()) for path, data, x in entries]
    data_by_sha = {sha: data for _path, data, _x, sha in hashed}
    manifest = sorted(
        ({"path": path, "size": len(data), "sha256": sha, "executable": x} for path, data, x, sha in hashed),
        key=lambda f: f["path"],
    )
    actual = tree_digest_of(kind=kind, manifest=manifest)
    if actual != digest:
        raise PlatformError(f"{kind} tree {digest}: its files hash to {actual}, not to its name; nothing was stored")
    with transaction.atomic():
        # Sorted: two submits storing the same new blobs lock their rows in one order, so PostgreSQL cannot
        # deadlock them (each waiting on a row the other inserted first).
        shas = sorted(data_by_sha)
        stored: set[str] = set()
        for start in range(0, len(shas), _LOOKUP_CHUNK):
            chunk = shas[start : start + _LOOKUP_CHUNK]
            stored.update(Blob.objects.filter(sha256__in=chunk).values_list("sha256", flat=True))
        batch: list[Blob] = []
        batch_bytes = 0
        for sha in shas:
            data = data_by_sha[sha]
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
    """Each file of the tree with its bytes, in manifest order, every one verified against the manifest (and the
    manifest against the tree's digest). A missing or corrupt blob raises PlatformError naming the file.

    Blobs are fetched a batch at a time (at most _LOOKUP_CHUNK distinct blobs and READ_BATCH_BYTES by the
    manifest's sizes per query), so a tree of many small files costs a few queries and memory stays bounded."""
    if tree_digest_of(kind=tree.kind, manifest=tree.manifest) != tree.digest:
        raise PlatformError(f"{_name(tree)}: its manifest in the database does not hash to its name; {_action(tree)}")
    for batch in _read_batches(tree.manifest):
        shas = sorted({entry["sha256"] for entry in batch})
        fetched = {sha: raw for sha, raw in Blob.objects.filter(sha256__in=shas).values_list("sha256", "data")}
        for entry in batch:
            raw = fetched.get(entry["sha256"])
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


def _read_batches(manifest: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    # Consecutive manifest entries, cut where a batch would exceed the key or byte budget. A content repeated in
    # a later batch is fetched again: simpler than keeping every blob until the end.
    batch: list[dict[str, Any]] = []
    shas: set[str] = set()
    size = 0
    for entry in manifest:
        new = entry["sha256"] not in shas
        if batch and new and (len(shas) >= _LOOKUP_CHUNK or size + int(entry["size"]) > READ_BATCH_BYTES):
            yield batch
            batch, shas, size = [], set(), 0
        batch.append(entry)
        if entry["sha256"] not in shas:
            shas.add(entry["sha256"])
            size += int(entry["size"])
    if batch:
        yield batch


def blob_tree_local_problem(*, tree: BlobTree, files_root: Path, layout: Layout | None = None) -> str | None:
    """Why the folder does not hold exactly the tree's files (an extra, missing, changed or unreadable file, or,
    given the layout, a file or folder whose permission bits are not the layout's), or None."""
    try:
        if not files_root.is_dir() or files_root.is_symlink():
            return f"{files_root} is missing"
        if layout is not None:
            root_mode = layout.dir_mode if layout.files_subdir else layout.top_mode
            if stat.S_IMODE(files_root.lstat().st_mode) != root_mode:
                return f"{files_root} has mode {stat.S_IMODE(files_root.lstat().st_mode):o}, not {root_mode:o}"
    except OSError as exc:
        return f"{files_root} cannot be read: {exc}"
    expected = {entry["path"]: entry for entry in tree.manifest}
    seen: set[str] = set()
    walk_errors: list[OSError] = []
    for folder, dirnames, filenames in os.walk(files_root, onerror=walk_errors.append):
        here = Path(folder)
        for name in [*filenames, *dirnames]:
            path = here / name
            rel = path.relative_to(files_root).as_posix()
            try:
                problem = _local_entry_problem(path, rel, expected.get(rel), layout)
            except OSError as exc:
                # A file this process cannot read (another owner, mode 0600) is a problem to rebuild, not a crash.
                problem = f"{rel!r} cannot be read: {exc}"
            if problem:
                return problem
            if rel in expected:
                seen.add(rel)
    if walk_errors:
        return f"a folder cannot be read: {walk_errors[0]}"
    missing = sorted(expected.keys() - seen)
    return f"{missing[0]!r} is missing" if missing else None


def _local_entry_problem(path: Path, rel: str, entry: dict[str, Any] | None, layout: Layout | None) -> str | None:
    st = path.lstat()
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        if layout is not None and mode != layout.dir_mode:
            return f"folder {rel!r} has mode {mode:o}, not {layout.dir_mode:o}"
        return None
    if entry is None:
        return f"{rel!r} is not part of the tree"
    if not stat.S_ISREG(st.st_mode):
        return f"{rel!r} is not a regular file"
    if st.st_size != entry["size"]:
        return f"{rel!r} has {st.st_size} bytes, not {entry['size']}"
    if layout is not None:
        want = layout.file_mode(bool(entry.get("executable")))
        if mode != want:
            # Too closed and the sandbox's uid cannot read it; too open and anyone may change it.
            return f"{rel!r} has mode {mode:o}, not {want:o}"
    if file_sha256(path) != entry["sha256"]:
        return f"{rel!r} does not match its sha256"
    return None


def blob_tree_materialize(*, kind: str, digest: str, dest: Path, layout: Layout) -> Path:
    """The local folder holding the tree's files (`dest`/`layout.files_subdir`), written from the database when
    it is missing or does not match the database's manifest. Raises PlatformError when the database cannot
    supply it (no tree row and no local copy, or a missing or corrupt blob).

    A rebuild swaps the new copy in under an exclusive lock on `.<name>.lock` beside `dest`, re-verifying the
    copy there first, so two workers never swap one another's fresh copy out. A replaced copy is renamed aside
    (`.stale-*`), never deleted here: a sandbox may still have it bind-mounted. caches_sweep removes it later."""
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
    try:
        os.chmod(tmp, layout.top_mode)
        root = tmp / layout.files_subdir if layout.files_subdir else tmp
        root.mkdir(mode=layout.dir_mode, exist_ok=True)
        os.chmod(root, layout.dir_mode if layout.files_subdir else layout.top_mode)
        for entry, data in blob_tree_read(tree=tree):
            target = _inside(root, entry["path"], tree)
            _mkdirs(target.parent, root, layout.dir_mode)
            file_write_new(target, data, layout.file_mode(bool(entry.get("executable"))))
        for name, data in layout.extra_files(tree).items():
            file_write_new(_inside(tmp, name, tree), data, 0o644)
        # No fsync: every reader verifies the copy against the database, and a torn one is rebuilt.
        with _locked(dest):
            if (dest.exists() or dest.is_symlink()) and _local_problem(tree, dest, files_root, layout) is None:
                return files_root  # another worker materialized it while we were writing ours
            if dest.exists() or dest.is_symlink():
                aside = dest.parent / f".stale-{digest[:12]}-{uuid.uuid4().hex[:8]}"
                os.rename(dest, aside)
                with contextlib.suppress(OSError):
                    os.utime(aside, follow_symlinks=False)  # the sweep counts its age from now
            os.rename(tmp, dest)
    finally:
        # Our own temporary is ours alone: nobody mounts it, so it goes at once.
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return files_root


def caches_sweep(*, older_than_s: float | None = None, now: float | None = None) -> int:
    """Remove what rebuilds and crashed writers left in this host's caches (SUBMISSIONS_ROOT, DATA_DIR/graders,
    DATA_DIR/starters): set-aside copies, temporaries and unused lock files older than `older_than_s` (default
    twice settings.GRADING_MAX_WALL_SECONDS, so no grading still has a set-aside copy mounted). Returns how many
    entries it removed."""
    cutoff = (now if now is not None else time.time()) - (
        older_than_s if older_than_s is not None else 2 * settings.GRADING_MAX_WALL_SECONDS
    )
    roots = [Path(settings.SUBMISSIONS_ROOT), Path(settings.DATA_DIR) / "graders", Path(settings.DATA_DIR) / "starters"]
    removed = 0
    for root in roots:
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            if not (_LOCK.match(entry.name) or _SWEPT.match(entry.name)):
                continue  # a tree (or anything else): never the sweep's
            try:
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
                if _LOCK.match(entry.name):
                    removed += _lock_file_remove(Path(entry.path))
                elif _SWEPT.match(entry.name):
                    if entry.is_dir(follow_symlinks=False):
                        _tree_remove(Path(entry.path))
                    else:
                        os.unlink(entry.path)
                    removed += 1
            except OSError as exc:
                logger.warning("could not sweep %s: %s", entry.path, exc)
    return removed


def _tree_remove(top: Path) -> None:
    # Read-only folders (a grader's 0555 files sit in 0755 folders, but be sure) must be writable to empty them.
    for folder, _dirs, _files in os.walk(top):
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)
    shutil.rmtree(top)


def _lock_file_remove(path: Path) -> int:
    # Only a lock nobody holds, and while holding it ourselves: a locker re-checks that its file is still the
    # one at the path (_locked), so it never locks an unlinked file.
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        os.unlink(path)
        return 1
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """An exclusive flock on `.<name>.lock` beside dest, held for the block (released by the kernel if we die)."""
    path = dest.parent / f".{dest.name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)  # the sweep removed that file while we waited: lock the one at the path now
    try:
        yield
    finally:
        os.close(fd)


def _local_problem(tree: BlobTree, dest: Path, files_root: Path, layout: Layout) -> str | None:
    if not _extras_present(dest, layout):
        return f"{dest} lacks its manifest"
    if layout.files_subdir:
        try:
            top = stat.S_IMODE(dest.lstat().st_mode)
        except OSError as exc:
            return f"{dest} cannot be read: {exc}"
        if top != layout.top_mode:
            return f"{dest} has mode {top:o}, not {layout.top_mode:o}"
    return blob_tree_local_problem(tree=tree, files_root=files_root, layout=layout)


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


def _path_check(*, kind: str, digest: str, path: str) -> None:
    # A manifest path becomes a file path on every host that materializes the tree: only plain relative ones.
    parts = path.split("/") if isinstance(path, str) else []
    if (
        not parts
        or any(part in ("", ".", "..") for part in parts)
        or "\x00" in path
        or "\\" in path
        or PurePosixPath(path).as_posix() != path
    ):
        raise PlatformError(
            f"{kind} tree {digest}: refusing to store it, its path {path!r} is not a plain relative path; "
            "nothing was stored"
        )


def _inside(base: Path, relative: str, tree: BlobTree) -> Path:
    # A manifest path is data: never let one address outside the folder being written.
    target = (base / relative).resolve()
    if not target.is_relative_to(base.resolve()) or target == base.resolve():
        raise PlatformError(
            f"{_name(tree)}: refusing to materialize it, its manifest path {relative!r} lies outside {base}; "
            f"{_action(tree)}"
        )
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


def file_write_new(target: Path, data: bytes, mode: int, *, durable: bool = False) -> None:
    """Write a file that must not exist yet (never through a symlink), with `mode` whatever the umask; `durable`
    fsyncs it before returning."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fchmod(fd, mode)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
