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


_XLINK_NS = "http://www.w3.org/1999/xlink"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
# Drawing tools write their own elements and attributes (Inkscape's <sodipodi:namedview>, a licence in
# <metadata>); browsers ignore elements of namespaces they do not know, so these stay allowed. Anything else
# outside the SVG namespace (XHTML <iframe>, <embed>, <object>, MathML, …) is refused.
_EDITOR_NS = frozenset(
    {
        "http://www.inkscape.org/namespaces/inkscape",
        "http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd",
    }
)
_METADATA_NS = frozenset(
    {
        "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
        "http://purl.org/dc/elements/1.1/",
        "http://purl.org/dc/terms/",
        "http://creativecommons.org/ns#",
        "http://web.resource.org/cc/",
    }
)
# The elements that change another attribute over time: one of them turning href into "javascript:…" would
# make a safe link unsafe after the checks below have passed it.
_ANIMATIONS = frozenset({"set", "animate", "animatetransform", "animatemotion", "discard", "animatecolor"})
# In CSS (a <style> element, a style="…" attribute, and presentation attributes such as fill="url(…)"):
# url(…) not pointing inside the file (#id), @import, image-set(…), and backslash escapes, which could spell
# any of these in a way the other patterns do not see.
_CSS_URL = re.compile(r"url\(\s*(['\"]?)\s*([^'\")\s]*)", re.IGNORECASE)
_CSS_REFUSED = re.compile(r"@import|image-set\(|\\", re.IGNORECASE)
_OUTSIDE = "references to other files are not allowed: draw it in the SVG, or show the picture as a figure of its own"


def svg_problem(path: str, text: str) -> AssetProblem | None:
    """An SVG that is not a plain drawing: scripts, event handlers, embedded HTML, external references.

    DOCTYPE and ENTITY are refused before parsing, so entity expansion (billion laughs) and external entities
    never reach the XML parser. The pull parser reports processing instructions (<?xml-stylesheet …?>), which
    ElementTree's tree would silently drop; the XML declaration is not one and stays allowed.
    """
    upper = text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        return AssetProblem(
            f"{path} declares a DOCTYPE or ENTITY, which course SVGs may not hold",
            "remove the <!DOCTYPE …> declaration (editors add it; SVG does not need it)",
        )
    parser = ET.XMLPullParser(events=("start", "end", "pi"))  # no DOCTYPE/ENTITY can reach here
    try:
        parser.feed(text)
        parser.close()
    except ET.ParseError as exc:
        return AssetProblem(f"{path} is not well-formed XML ({exc})", "export the SVG again from your editor")
    depth = 0
    metadata_depth = 0  # > 0 inside a <metadata> element
    for event, element in parser.read_events():
        if event == "pi":
            return AssetProblem(
                f"{path} holds the processing instruction <?{(element.text or '')[:60]}?>, "
                "which course SVGs may not hold",
                "remove it (a <?xml-stylesheet?> loads a file from elsewhere); only the <?xml …?> declaration "
                "may start the file",
            )
        if event == "end":
            depth -= 1
            if metadata_depth and depth < metadata_depth:
                metadata_depth = 0
            problem = _svg_text_problem(path, element)
            if problem is not None:
                return problem
            continue
        depth += 1
        if depth == 1 and element.tag != f"{{{_SVG_NS}}}svg":
            return AssetProblem(
                f"{path} is not an SVG image (its root element is {_local(element.tag)!r}, "
                "not <svg> in the SVG namespace)",
                f'start the file with <svg xmlns="{_SVG_NS}" …>',
            )
        problem = _svg_element_problem(path, element, in_metadata=metadata_depth > 0)
        if problem is not None:
            return problem
        if element.tag == f"{{{_SVG_NS}}}metadata" and not metadata_depth:
            metadata_depth = depth
    return None


def _svg_element_problem(path: str, element: ET.Element, *, in_metadata: bool) -> AssetProblem | None:
    namespace, name = _split(element.tag)
    if namespace != _SVG_NS and namespace not in _EDITOR_NS and not (in_metadata and namespace in _METADATA_NS):
        where = f"in the namespace {namespace!r}" if namespace else "in no namespace"
        return AssetProblem(
            f"{path} holds a <{name}> element {where}; course SVGs may hold SVG elements only",
            "remove it, or save the drawing again as plain SVG (Inkscape: Save As → Plain SVG); embedded HTML, "
            "frames and objects are not allowed",
        )
    if namespace == _SVG_NS and name.lower() in ("script", "foreignobject"):
        return AssetProblem(
            f"{path} holds a <{name}> element, which course SVGs may not hold",
            "remove it: course figures are drawings only (no scripts, no embedded HTML)",
        )
    if namespace == _SVG_NS and name.lower() in _ANIMATIONS:
        target = element.attrib.get("attributeName", "").strip().lower()
        if target.rsplit(":", 1)[-1] == "href":
            return AssetProblem(
                f"{path} has a <{name}> that changes the link {target!r}; only links inside the file are allowed",
                f"remove the <{name}> that changes a link (animate colours, positions or opacity instead)",
            )
    for attribute, value in element.attrib.items():
        attr_ns, local = _split(attribute)
        if local.lower().startswith("on"):
            return AssetProblem(
                f"{path} has an event handler attribute {local!r} on <{name}>",
                "remove the on… attributes: course figures may not run scripts",
            )
        if local.lower() == "href" and not value.startswith("#"):
            return AssetProblem(
                f"{path} refers to {value[:80]!r} from <{name}>; only references inside the file (#id) are allowed",
                _OUTSIDE,
            )
        if attr_ns == _XML_NS and local == "base":
            return AssetProblem(
                f"{path} sets xml:base on <{name}>, which changes where its references lead",
                "remove the xml:base attribute",
            )
        # Editor attributes (inkscape:export-filename="C:\Users\…") are never read by a browser.
        if attr_ns not in _EDITOR_NS:
            problem = _css_problem(path, value, f"the {local!r} attribute of <{name}>")
            if problem is not None:
                return problem
    return None


def _svg_text_problem(path: str, element: ET.Element) -> AssetProblem | None:
    """The CSS of a <style> element (CDATA included: the parser hands it over as text)."""
    if element.tag != f"{{{_SVG_NS}}}style":
        return None
    return _css_problem(path, "".join(element.itertext()), "a <style> element")


def _css_problem(path: str, css: str, where: str) -> AssetProblem | None:
    for match in _CSS_URL.finditer(css):
        if not match.group(2).startswith("#"):
            return AssetProblem(
                f"{path} refers to url({match.group(2)[:80]}) in {where}; only url(#id) references inside the "
                "file are allowed",
                _OUTSIDE,
            )
    refused = _CSS_REFUSED.search(css)
    if refused is not None:
        what = "a backslash escape" if refused.group(0) == "\\" else repr(refused.group(0))
        return AssetProblem(
            f"{path} has {what} in {where}, which course SVGs may not hold",
            "remove it: styles may not load other files, so write them without @import, image-set() or "
            "backslash escapes",
        )
    return None


def _split(tag: str) -> tuple[str, str]:
    """(namespace, local name) of an ElementTree tag or attribute name ("{ns}name")."""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
