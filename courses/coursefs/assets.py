"""What a course may ship as an asset (an image or a data file a lesson references), checked before it is stored.

Assets are served from the site's own origin to every reader, so the checks are strict: plain names, a known
extension, a size cap, content that really is of its type, and SVG that can hold no script or external
reference. Each check returns an `AssetProblem` (message and hint) or None; the loader adds the file and line.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET  # parses only after DOCTYPE/ENTITY are refused (see svg_problem)
from dataclasses import dataclass

MAX_ASSET_BYTES = 5 * 1024 * 1024
MAX_COURSE_ASSET_BYTES = 50 * 1024 * 1024
MAX_ASSET_PATH = 200

IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "svg": "image/svg+xml",
}
DATA_TYPES = {
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "json": "application/json",
    "txt": "text/plain",
    "ipynb": "application/x-ipynb+json",
}
MEDIA_TYPES = {**IMAGE_TYPES, **DATA_TYPES}

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SVG_NS = "http://www.w3.org/2000/svg"
_NAME_HINT = (
    "name files and folders with ASCII letters, digits, '.', '_' and '-' only, starting with a letter or digit "
    "(e.g. figures/request-flow.svg)"
)
_EXTENSIONS = ", ".join(MEDIA_TYPES)


@dataclass(frozen=True)
class AssetProblem:
    message: str
    hint: str


def extension(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def asset_kind(path: str) -> str:
    """ "image" (may be shown with ![alt](path)) or "data" (linked only); "" for an unknown extension."""
    ext = extension(path)
    return "image" if ext in IMAGE_TYPES else "data" if ext in DATA_TYPES else ""


def media_type(path: str) -> str:
    return MEDIA_TYPES.get(extension(path), "")


def name_problem(path: str) -> AssetProblem | None:
    """A course-relative path (already normalised, posix) that is not a safe, known asset name."""
    if len(path) > MAX_ASSET_PATH:
        return AssetProblem(
            f"the asset path is {len(path)} characters long, the maximum is {MAX_ASSET_PATH}",
            "use shorter folder and file names",
        )
    for segment in path.split("/"):
        if not _SEGMENT.fullmatch(segment):
            return AssetProblem(f"the asset name {segment!r} in {path!r} is not allowed", _NAME_HINT)
    if not asset_kind(path):
        ext = extension(path)
        found = f"the extension {'.' + ext!r}" if ext else "no extension"
        return AssetProblem(
            f"{path!r} has {found}, which is not a course asset type",
            f"use one of: {_EXTENSIONS}; other files belong in a lab's starter/ folder",
        )
    return None


def content_problem(path: str, data: bytes) -> AssetProblem | None:
    """The file's bytes do not match its extension (a .png that is text, a .json that does not parse, …)."""
    ext = extension(path)
    if len(data) > MAX_ASSET_BYTES:
        return AssetProblem(
            f"{path} is {len(data)} bytes, above the {MAX_ASSET_BYTES} byte limit for one course asset",
            "shrink or compress it (a smaller PNG, a WebP, a sample of the data)",
        )
    if ext in ("png", "jpg", "jpeg", "gif", "webp"):
        if not _magic_matches(ext, data):
            return AssetProblem(
                f"{path} is not a {ext.upper()} image (its first bytes do not match the type)",
                f"export the image again as {ext.upper()}, or give the file the extension of its real type",
            )
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return AssetProblem(f"{path} is not valid UTF-8 (line {line})", "save the file with UTF-8 encoding")
    if ext == "svg":
        return svg_problem(path, text)
    if ext in ("json", "ipynb"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            return AssetProblem(f"{path} is not valid JSON ({exc})", "fix the JSON syntax at that place")
        if ext == "ipynb" and not (isinstance(value, dict) and isinstance(value.get("cells"), list)):
            return AssetProblem(
                f"{path} is not a Jupyter notebook (it has no list of 'cells')",
                "save it from Jupyter as .ipynb, or rename it .json",
            )
    return None


def _magic_matches(ext: str, data: bytes) -> bool:
    if ext == "png":
        return data.startswith(b"\x89PNG\r\n\x1a\n")
    if ext in ("jpg", "jpeg"):
        return data.startswith(b"\xff\xd8\xff")
    if ext == "gif":
        return data[:6] in (b"GIF87a", b"GIF89a")
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def svg_problem(path: str, text: str) -> AssetProblem | None:
    """An SVG that is not a plain drawing: scripts, event handlers, embedded HTML, external references.

    DOCTYPE and ENTITY are refused before parsing, so entity expansion (billion laughs) and external entities
    never reach the XML parser.
    """
    upper = text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        return AssetProblem(
            f"{path} declares a DOCTYPE or ENTITY, which course SVGs may not hold",
            "remove the <!DOCTYPE …> declaration (editors add it; SVG does not need it)",
        )
    try:
        root = ET.fromstring(text)  # noqa: S314 - no DOCTYPE/ENTITY can reach here
    except ET.ParseError as exc:
        return AssetProblem(f"{path} is not well-formed XML ({exc})", "export the SVG again from your editor")
    if root.tag != f"{{{_SVG_NS}}}svg":
        return AssetProblem(
            f"{path} is not an SVG image (its root element is {_local(root.tag)!r}, not <svg> in the SVG namespace)",
            f'start the file with <svg xmlns="{_SVG_NS}" …>',
        )
    for element in root.iter():
        name = _local(element.tag)
        if name.lower() in ("script", "foreignobject"):
            return AssetProblem(
                f"{path} holds a <{name}> element, which course SVGs may not hold",
                "remove it: course figures are drawings only (no scripts, no embedded HTML)",
            )
        for attribute, value in element.attrib.items():
            local = _local(attribute)
            if local.lower().startswith("on"):
                return AssetProblem(
                    f"{path} has an event handler attribute {local!r} on <{name}>",
                    "remove the on… attributes: course figures may not run scripts",
                )
            if local.lower() == "href" and not value.startswith("#"):
                return AssetProblem(
                    f"{path} refers to {value[:80]!r} from <{name}>; only references inside the file (#id) are allowed",
                    "embed the referenced image or font in the drawing, or remove the reference",
                )
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
