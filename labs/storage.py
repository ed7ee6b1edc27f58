"""Content-addressed storage of submitted trees: blobs in the database (labs.blobs, what every host shares) and a
per-host copy under settings.SUBMISSIONS_ROOT, written on submit and materialized from the database elsewhere.

Layout: `<root>/<tree_sha256>/files/<path>` plus `<root>/<tree_sha256>/manifest.json`. A tree is written to a
temporary folder inside the root, fsynced, then renamed into place, so a reader (the sandbox's read-only bind
mount) never sees half a tree. Files are 0644 and folders 0755 so the sandbox's uid 1000 can read them.
Readers that need the files go through `tree_materialize`, which verifies the local copy and rebuilds it from the
database when it is missing or does not match.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings

from labs.blobs import Layout, blob_tree_get, blob_tree_materialize, blob_tree_put, file_write_new
from labs.errors import PlatformError
from labs.models import BlobTree
from labs.uploads import ValidatedTree

FILE_MODE = 0o644
DIR_MODE = 0o755


def submissions_root() -> Path:
    root = Path(settings.SUBMISSIONS_ROOT).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def tree_path(*, tree_sha256: str) -> Path:
    """Where a stored tree lives; the digest is checked so a caller can never address outside the root."""
    if len(tree_sha256) != 64 or any(ch not in "0123456789abcdef" for ch in tree_sha256):
        raise PlatformError(f"not a sha256 tree digest: {tree_sha256!r}")
    return submissions_root() / tree_sha256


def tree_files_dir(*, tree_sha256: str) -> Path:
    """The learner's files of a stored tree: what the sandbox mounts read-only as the submission."""
    return tree_path(tree_sha256=tree_sha256) / "files"


def tree_materialize(*, tree_sha256: str) -> Path:
    """The learner's files of a stored tree on this host (what tree_files_dir names), written from the database
    when the local copy is missing or does not match it. Raises PlatformError when the database cannot supply it."""
    return blob_tree_materialize(
        kind=BlobTree.Kind.SUBMISSION,
        digest=tree_sha256,
        dest=tree_path(tree_sha256=tree_sha256),
        layout=_LAYOUT,
    )


def tree_manifest(*, tree_sha256: str) -> list[dict] | None:
    """The stored tree's files as Revision.files lists them ({path, size, sha256}), or None if it is not stored.
    Read from the database; a tree stored before blobs existed (not backfilled yet) from its local manifest.json."""
    stored = blob_tree_get(kind=BlobTree.Kind.SUBMISSION, digest=tree_sha256)
    if stored is not None:
        return _files_listed(stored)
    local = tree_path(tree_sha256=tree_sha256) / "manifest.json"
    if not local.is_file():
        return None
    return json.loads(local.read_text()).get("files", [])


def tree_store(*, tree: ValidatedTree) -> Path:
    """Store the tree in the database and on this host unless already stored; return its local folder.
    Idempotent: the same content is stored once. The database write joins the caller's transaction, so a submit
    that rolls back leaves no tree row (its local copy stays: unreferenced, immutable, harmless)."""
    blob_tree_put(
        kind=BlobTree.Kind.SUBMISSION,
        digest=tree.tree_sha256,
        entries=[(path, data, False) for path, data, _digest in tree.files],
    )
    final = tree_path(tree_sha256=tree.tree_sha256)
    if (final / "manifest.json").is_file():
        return final
    root = final.parent
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root))
    try:
        os.chmod(tmp, DIR_MODE)
        files_dir = tmp / "files"
        _mkdir(files_dir, tmp)
        for path, data, _digest in tree.files:
            target = _inside(files_dir, path)
            _mkdir(target.parent, files_dir)
            file_write_new(target, data, FILE_MODE, durable=True)
        file_write_new(
            tmp / "manifest.json",
            json.dumps(_manifest(tree), indent=1, sort_keys=True).encode(),
            FILE_MODE,
            durable=True,
        )
        _fsync_tree(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process stored the same digest first; theirs is identical, keep it.
            if not (final / "manifest.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _manifest(tree: ValidatedTree) -> dict:
    return {"tree_sha256": tree.tree_sha256, "total_bytes": tree.total_bytes, "files": tree.manifest()}


def _files_listed(stored: BlobTree) -> list[dict]:
    # As Revision.files and a local manifest.json list them: no executable bit (a submission has none).
    return [{"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in stored.manifest]


def _manifest_json(stored: BlobTree) -> bytes:
    manifest = {"tree_sha256": stored.digest, "total_bytes": stored.total_bytes, "files": _files_listed(stored)}
    return json.dumps(manifest, indent=1, sort_keys=True).encode()


# What tree_store writes, so a materialized copy is the same folder.
_LAYOUT = Layout(
    files_subdir="files",
    top_mode=DIR_MODE,
    dir_mode=DIR_MODE,
    file_mode=lambda executable: FILE_MODE,
    extra_names=("manifest.json",),
    extra_files=lambda stored: {"manifest.json": _manifest_json(stored)},
)


def _inside(base: Path, relative: str) -> Path:
    """Resolve `relative` under `base` and refuse anything that lands elsewhere (defence in depth: the
    validator already refused such paths)."""
    target = (base / relative).resolve()
    if not target.is_relative_to(base.resolve()) or target == base.resolve():
        raise PlatformError(f"refusing to write {relative!r} outside {base}")
    return target


def _mkdir(path: Path, base: Path) -> None:
    _inside(base.parent, str(path.relative_to(base.parent)))
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=DIR_MODE)
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask


def _fsync_tree(top: Path) -> None:
    for folder, _dirs, _files in os.walk(top):
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
