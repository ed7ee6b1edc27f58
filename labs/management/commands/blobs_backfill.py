"""Upload into the database (labs.blobs) the trees this host's local stores hold that the database lacks.

For stores written before migration labs 0010: run it once, on the host that holds SUBMISSIONS_ROOT and
DATA_DIR (the web host), after migrating. A command rather than a data migration: a migration runs wherever
`migrate` runs and must not depend on a host's files, and this one may need running again (after restoring a
backup of the files, say). Idempotent; what is missing locally is named, not fatal. A tree whose row exists
but some of whose blobs do not (deleted as corrupt, docs/runbook.md) gets them again from the local copy.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from django.core.management.base import BaseCommand

from labs import bundles, storage
from labs.blobs import Entry, blob_tree_get, blob_tree_missing, blob_tree_put
from labs.errors import PlatformError
from labs.models import BlobTree, Lab, Revision


class Command(BaseCommand):
    help = "Upload trees the local stores hold (submissions, grader bundles, starters) into the database's blobs."

    def handle(self, *args, **options) -> None:
        counts = {"uploaded": 0, "already stored": 0, "missing": 0}
        labs = list(Lab.objects.all())
        submissions = set(Revision.objects.values_list("tree_sha256", flat=True).distinct())
        submissions |= {e.tree_sha256 for lab in labs for e in lab.labspec.examples if e.tree_sha256}
        graders = {lab.grader_digest for lab in labs if lab.grader_digest}
        starters = {lab.starter_digest for lab in labs if lab.starter_digest}
        work = [
            *((BlobTree.Kind.SUBMISSION, d, _submission_entries) for d in sorted(submissions)),
            *((BlobTree.Kind.GRADER, d, _grader_entries) for d in sorted(graders)),
            *((BlobTree.Kind.STARTER, d, _starter_entries) for d in sorted(starters)),
        ]
        for kind, digest, entries_of in work:
            stored = blob_tree_get(kind=kind, digest=digest)
            if stored is not None and not blob_tree_missing(tree=stored):
                counts["already stored"] += 1
                continue
            try:
                blob_tree_put(kind=kind, digest=digest, entries=entries_of(digest))
            except (PlatformError, OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                counts["missing"] += 1
                self.stdout.write(f"skipped {kind} {digest}: missing or unreadable on this host ({exc})")
                continue
            counts["uploaded"] += 1
        self.stdout.write(", ".join(f"{n} {what}" for what, n in counts.items()))


def _submission_entries(digest: str) -> list[Entry]:
    top = storage.tree_path(tree_sha256=digest)
    manifest = json.loads((top / "manifest.json").read_text())
    return [(f["path"], (top / "files" / f["path"]).read_bytes(), False) for f in manifest["files"]]


def _grader_entries(digest: str) -> list[Entry]:
    top = bundles.grader_dir(digest=digest)
    if not top.is_dir():
        raise FileNotFoundError(f"{top} is not a folder")
    entries = []
    for folder, _dirs, files in os.walk(top):
        for name in files:
            path = Path(folder) / name
            entries.append((path.relative_to(top).as_posix(), path.read_bytes(), bool(path.stat().st_mode & 0o111)))
    return entries


def _starter_entries(digest: str) -> list[Entry]:
    with zipfile.ZipFile(bundles.starter_path(digest=digest)) as archive:
        return [
            (info.filename, archive.read(info), bool((info.external_attr >> 16) & 0o111))
            for info in archive.infolist()
            if not info.is_dir()
        ]
