"""Content-addressed storage of submitted trees under settings.SUBMISSIONS_ROOT.

Layout: `<root>/<tree_sha256>/files/<path>` plus `<root>/<tree_sha256>/manifest.json`. A tree is written to a
temporary folder inside the root, fsynced, then renamed into place, so a reader (the sandbox's read-only bind
mount) never sees half a tree. Files are 0644 and folders 0755 so the sandbox's uid 1000 can read them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings

from labs.errors import PlatformError
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


def tree_store(*, tree: ValidatedTree) -> Path:
    """Write the tree if it is not stored yet and return its folder. Idempotent: the same content is stored once."""
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
            _write_file(target, data)
        _write_file(tmp / "manifest.json", json.dumps(_manifest(tree), indent=1, sort_keys=True).encode())
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


def _write_file(target: Path, data: bytes) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fchmod(fd, FILE_MODE)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(top: Path) -> None:
    for folder, _dirs, _files in os.walk(top):
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
