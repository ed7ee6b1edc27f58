"""Course assets (images and data files a lesson refers to): hostile names, sizes and types refused; good ones
registered with their digest and media type, at import and on a render-cache hit alike.

No database mark: the loader reads assets without a database.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
from pathlib import Path

import pytest

from courses.coursefs import CourseSpec, LessonSpec, Rendered, load_course
from courses.coursefs import loader as loader_module
from courses.coursefs.assets import (
    MAX_ASSET_BYTES,
    asset_kind,
    content_problem,
    media_type,
    name_problem,
    svg_problem,
)
from tests.courses.test_coursefs import GOOD, lesson, the_problem, write

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
GIF = b"GIF89a" + b"\x00" * 32
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 10 10">'
    '<defs><circle id="dot" r="2"/></defs><use xlink:href="#dot" x="5" y="5"/>'
    "<style>circle { fill: teal; }</style></svg>"
)
NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
LESSON = "unit-one/03-figures.md"


@pytest.fixture
def course_dir(tmp_path: Path) -> Path:
    target = tmp_path / "course"
    shutil.copytree(GOOD, target)
    return target


def put(root: Path, rel: str, data: bytes | str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def with_body(root: Path, body: str) -> None:
    """A lesson whose body starts at file line 4 (three front matter lines)."""
    write(root, LESSON, lesson("title: Figures\n", body))


# --- names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../x.png",
        "/etc/x.png",
        "a b.png",
        ".hidden.png",
        "figures/.secret/x.png",
        "figures//x.png",
        "-dash.png",
        "caf\u00e9.png",  # a letter outside ASCII
        "\u202egnp.svg",  # a right-to-left override that makes the name read backwards
        "\uff46ig.png",  # a fullwidth letter that looks like ASCII
        "x.png\n",
        "x\x00.png",
        "figures\\x.png",
        "a" * 197 + ".png",
    ],
)
def test_it_refuses_a_hostile_asset_name(path: str) -> None:
    problem = name_problem(path)

    assert problem is not None
    assert problem.hint


def test_a_long_path_is_refused_with_its_length() -> None:
    problem = name_problem("figures/" + "a" * 190 + ".png")

    assert problem is not None and "202 characters long, the maximum is 200" in problem.message


@pytest.mark.parametrize("path", ["x.exe", "notes", "figure.png.html", "data/table.xlsx"])
def test_it_refuses_an_extension_that_is_not_a_course_asset_type(path: str) -> None:
    problem = name_problem(path)

    assert problem is not None and "not a course asset type" in problem.message
    assert "png" in problem.hint and "csv" in problem.hint


@pytest.mark.parametrize(
    ("path", "kind", "media"),
    [
        ("figures/flow.svg", "image", "image/svg+xml"),
        ("Photo_1.JPG", "image", "image/jpeg"),
        ("a.jpeg", "image", "image/jpeg"),
        ("a.png", "image", "image/png"),
        ("a.gif", "image", "image/gif"),
        ("a.webp", "image", "image/webp"),
        ("data/latencies.csv", "data", "text/csv"),
        ("data/t.tsv", "data", "text/tab-separated-values"),
        ("d.json", "data", "application/json"),
        ("notes.v2.txt", "data", "text/plain"),
        ("n.ipynb", "data", "application/x-ipynb+json"),
    ],
)
def test_a_good_name_is_accepted_with_its_kind_and_media_type(path: str, kind: str, media: str) -> None:
    assert name_problem(path) is None
    assert (asset_kind(path), media_type(path)) == (kind, media)


# --- content -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "data"),
    [("a.png", PNG), ("a.jpg", JPEG), ("a.gif", GIF), ("a.webp", WEBP), ("a.svg", SVG.encode())],
)
def test_images_whose_bytes_match_their_type_are_accepted(path: str, data: bytes) -> None:
    assert content_problem(path, data) is None


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("a.png", b"just some text pretending to be a picture"),
        ("a.png", JPEG),
        ("a.jpg", PNG),
        ("a.gif", b"GIF90a" + b"\x00" * 10),
        ("a.webp", b"RIFF\x24\x00\x00\x00WAVE" + b"\x00" * 10),
    ],
)
def test_it_refuses_an_image_whose_bytes_are_of_another_type(path: str, data: bytes) -> None:
    problem = content_problem(path, data)

    assert problem is not None and "first bytes do not match" in problem.message


def test_it_refuses_a_file_above_the_size_limit() -> None:
    problem = content_problem("a.csv", b"x" * (MAX_ASSET_BYTES + 1))

    assert problem is not None and f"above the {MAX_ASSET_BYTES} byte limit" in problem.message


@pytest.mark.parametrize(
    ("path", "data", "says"),
    [
        ("a.csv", b"ok\n\xff\xfe\n", "not valid UTF-8 (line 2)"),
        ("a.json", b"{not json", "not valid JSON"),
        ("a.ipynb", b'{"metadata": {}}', "not a Jupyter notebook"),
        ("a.ipynb", b"[]", "not a Jupyter notebook"),
    ],
)
def test_it_refuses_data_that_is_not_of_its_type(path: str, data: bytes, says: str) -> None:
    problem = content_problem(path, data)

    assert problem is not None and says in problem.message


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("a.csv", "ms\n12\n"),
        ("a.tsv", "a\tb\n"),
        ("a.json", "[1, 2]"),
        ("a.txt", "caf\u00e9 notes"),
        ("a.ipynb", NOTEBOOK),
    ],
)
def test_data_files_of_their_type_are_accepted(path: str, data: str) -> None:
    assert content_problem(path, data.encode()) is None


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><svg xmlns="http://www.w3.org/2000/svg"><text>&lol3;</text></svg>'
)
NS = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'


@pytest.mark.parametrize(
    ("svg", "says"),
    [
        (f"<svg {NS}><script>alert(1)</script></svg>", "<script>"),
        (f'<svg {NS}><script xlink:href="#x"/></svg>', "<script>"),
        (f'<svg {NS} onload="alert(1)"/>', "'onload'"),
        (f'<svg {NS}><rect ONCLICK="x()"/></svg>', "'ONCLICK'"),
        (f"<svg {NS}><foreignObject><p>hi</p></foreignObject></svg>", "<foreignObject>"),
        (f'<svg {NS}><image href="https://example.org/x.png"/></svg>', "only references inside the file"),
        (f'<svg {NS}><use xlink:href="other.svg#dot"/></svg>', "only references inside the file"),
        (f'<svg {NS}><a href="javascript:alert(1)"><text>x</text></a></svg>', "only references inside the file"),
        (BILLION_LAUGHS, "DOCTYPE or ENTITY"),
        ('<!doctype svg><svg xmlns="http://www.w3.org/2000/svg"/>', "DOCTYPE or ENTITY"),
        ("<svg><circle r='1'/></svg>", "not <svg> in the SVG namespace"),
        ('<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>', "root element is 'html'"),
        (f"<svg {NS}><g></svg>", "not well-formed XML"),
    ],
)
def test_it_refuses_an_svg_that_could_run_script_or_reach_out(svg: str, says: str) -> None:
    problem = svg_problem("fig.svg", svg)

    assert problem is not None and says in problem.message, problem
    assert problem.hint


XHTML = 'xmlns:h="http://www.w3.org/1999/xhtml"'


@pytest.mark.parametrize(
    ("svg", "says", "hint"),
    [
        # An animation that turns a checked link into a script after the check.
        (
            f'<svg {NS}><a href="#x"><set attributeName="href" to="javascript:alert(1)"/><text>x</text></a></svg>',
            "<set> that changes the link 'href'",
            "remove the <set> that changes a link",
        ),
        (
            f'<svg {NS}><a xlink:href="#x"><animate attributeName="xlink:href" values="javascript:alert(1)"/></a></svg>',
            "<animate> that changes the link 'xlink:href'",
            "remove the <animate>",
        ),
        (f'<svg {NS}><a href="#x"><animateMotion attributeName=" HREF "/></a></svg>', "<animateMotion>", "link"),
        (f'<svg {NS}><a href="#x"><animateTransform attributeName="Href"/></a></svg>', "<animateTransform>", "link"),
        (f'<svg {NS}><discard attributeName="href"/></svg>', "<discard>", "link"),
        # Processing instructions: ElementTree's tree drops them, so they were never seen.
        (
            f'<?xml version="1.0"?><?xml-stylesheet href="http://127.0.0.1/x.css"?><svg {NS}/>',
            "processing instruction <?xml-stylesheet",
            "only the <?xml …?> declaration",
        ),
        (f"<svg {NS}><g><?php echo 1; ?></g></svg>", "processing instruction <?php", "remove it"),
        # CSS that loads another file, in a <style>, a style attribute or a presentation attribute.
        (
            f"<svg {NS}><style>@import url(http://127.0.0.1/x.css);</style></svg>",
            "url(http://127.0.0.1/x.css)",
            "other files",
        ),
        (f"<svg {NS}><style>@import 'http://127.0.0.1/x.css';</style></svg>", "'@import'", "styles may not load"),
        (f'<svg {NS}><style>@IMPORT "x.css";</style></svg>', "'@IMPORT'", "styles may not load"),
        (
            f"<svg {NS}><style><![CDATA[rect {{ fill: url( 'http://127.0.0.1/p.svg#g' ) }}]]></style></svg>",
            "<style>",
            "other files",
        ),
        (
            f'<svg {NS}><rect style="fill:url(http://127.0.0.1/p.svg#g)"/></svg>',
            "'style' attribute of <rect>",
            "other files",
        ),
        (f'<svg {NS}><rect fill="url(&quot;other.svg#g&quot;)"/></svg>', "'fill' attribute", "other files"),
        (f'<svg {NS}><rect mask="URL(other.svg#m)"/></svg>', "'mask' attribute", "other files"),
        (f'<svg {NS}><rect filter="url(//127.0.0.1/f.svg#f)"/></svg>', "'filter' attribute", "other files"),
        (f'<svg {NS}><rect clip-path="url(data:image/svg+xml,x)"/></svg>', "'clip-path' attribute", "other files"),
        (f'<svg {NS}><rect style="fill:\\75 rl(http://127.0.0.1/p.svg)"/></svg>', "a backslash escape", "escapes"),
        (f"<svg {NS}><rect style=\"background:image-set('x.png' 1x)\"/></svg>", "'image-set('", "image-set()"),
        # Elements outside the SVG namespace: HTML frames and objects, or anything a browser might load.
        (
            f'<svg {NS} {XHTML}><h:iframe src="http://127.0.0.1/"/></svg>',
            "<iframe> element in the namespace",
            "plain SVG",
        ),
        (f'<svg {NS} {XHTML}><h:embed src="x.swf"/></svg>', "<embed>", "plain SVG"),
        (f'<svg {NS}><object xmlns="http://www.w3.org/1999/xhtml" data="x"/></svg>', "<object>", "plain SVG"),
        (f'<svg {NS}><m:math xmlns:m="http://www.w3.org/1998/Math/MathML"/></svg>', "<math>", "plain SVG"),
        (f'<svg {NS}><g xmlns=""><rect/></g></svg>', "<g> element in no namespace", "plain SVG"),
        # Metadata vocabularies are allowed inside <metadata> only.
        (f'<svg {NS}><d:title xmlns:d="http://purl.org/dc/elements/1.1/">x</d:title></svg>', "<title>", "plain SVG"),
        (f'<svg {NS} xml:base="http://127.0.0.1/"><use href="#x"/></svg>', "xml:base", "remove the xml:base"),
    ],
)
def test_it_refuses_an_svg_that_reaches_out_through_animation_css_instructions_or_foreign_elements(
    svg: str, says: str, hint: str
) -> None:
    problem = svg_problem("fig.svg", svg)

    assert problem is not None and says in problem.message, problem
    assert hint in problem.hint, problem


INKSCAPE_SVG = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!-- Created with Inkscape (http://www.inkscape.org/) -->
<svg
   width="210mm" height="297mm" viewBox="0 0 210 297" version="1.1" id="svg5"
   inkscape:version="1.2.2 (b0a8486541, 2022-12-01)"
   sodipodi:docname="flow.svg"
   inkscape:export-filename="C:\\Users\\me\\flow.png"
   xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape"
   xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd"
   xmlns="http://www.w3.org/2000/svg"
   xmlns:svg="http://www.w3.org/2000/svg"
   xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
   xmlns:cc="http://creativecommons.org/ns#"
   xmlns:dc="http://purl.org/dc/elements/1.1/">
  <sodipodi:namedview id="namedview7" pagecolor="#ffffff" inkscape:zoom="0.7" inkscape:current-layer="layer1">
    <inkscape:page x="0" y="0" width="210" height="297" id="page9"/>
  </sodipodi:namedview>
  <defs id="defs2">
    <linearGradient inkscape:collect="always" id="fade"><stop style="stop-color:#2f6fb7" offset="0" /></linearGradient>
  </defs>
  <metadata id="metadata1">
    <rdf:RDF>
      <cc:Work rdf:about="">
        <dc:title>Request flow</dc:title>
        <cc:license rdf:resource="http://creativecommons.org/licenses/by/4.0/" />
      </cc:Work>
    </rdf:RDF>
  </metadata>
  <g inkscape:label="Layer 1" inkscape:groupmode="layer" id="layer1">
    <rect style="fill:url(#fade);stroke:#000000;stroke-width:0.26" id="rect1" width="80" height="40" x="20" y="20" />
    <rect fill="url( '#fade' )" width="10" height="10" />
    <a href="#rect1"><animate attributeName="opacity" values="0;1" dur="1s" /><text x="20" y="80">step</text></a>
  </g>
</svg>
"""


def test_it_accepts_an_svg_saved_by_a_drawing_tool_with_its_editor_data_and_metadata() -> None:
    assert svg_problem("flow.svg", INKSCAPE_SVG) is None


def test_the_sample_courses_figure_passes_the_svg_checks() -> None:
    figure = Path(__file__).resolve().parents[2] / (
        "courses/content/production-systems/module-03-production-deployment/figures/retry-timeline.svg"
    )

    assert svg_problem(figure.name, figure.read_text()) is None


# --- the loader: references in lessons and lab instructions ---------------------------------------------------
# These need the renderer to call the asset resolver (courses/markdown/render.py).


def test_a_referenced_image_and_data_file_are_registered_with_digest_and_media_type(course_dir: Path) -> None:
    put(course_dir, "unit-one/figures/flow.svg", SVG)
    put(course_dir, "unit-one/data/latencies.csv", "ms\n12\n")
    with_body(course_dir, "![The flow](figures/flow.svg)\n\nGet [the data](data/latencies.csv).\n")

    result = load_course(course_dir)

    assert result.problems == []
    svg = result.course.assets["unit-one/figures/flow.svg"]
    assert (svg.sha256, svg.size, svg.media_type, svg.kind) == (
        hashlib.sha256(SVG.encode()).hexdigest(),
        len(SVG),
        "image/svg+xml",
        "image",
    )
    csv = result.course.assets["unit-one/data/latencies.csv"]
    assert (csv.media_type, csv.kind, csv.filename) == ("text/csv", "data", "latencies.csv")
    html = next(item for item in result.course.lessons() if item.file == LESSON).html
    assert f'src="/course-assets/{svg.sha256}/flow.svg"' in html
    assert f'href="/course-assets/{csv.sha256}/latencies.csv"' in html


def test_a_png_in_a_shared_folder_at_the_course_root_is_found_from_a_unit(course_dir: Path) -> None:
    put(course_dir, "figures/logo.png", PNG)
    with_body(course_dir, "![logo](../figures/logo.png)\n")

    result = load_course(course_dir)

    assert result.problems == []
    assert result.course.assets["figures/logo.png"].media_type == "image/png"


def test_lab_instructions_resolve_assets_from_the_lab_folder(course_dir: Path) -> None:
    put(course_dir, "unit-two/hello-lab/figures/setup.png", PNG)
    path = course_dir / "unit-two/hello-lab/instructions.md"
    path.write_text(path.read_text() + "\n![setup](figures/setup.png)\n")

    result = load_course(course_dir)

    assert result.problems == []
    assert "unit-two/hello-lab/figures/setup.png" in result.course.assets
    assert "/course-assets/" in result.course.labs()[0].rendered.html


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("![x](missing.png)", "does not exist"),
        ("![x](../../outside.png)", "outside the course directory"),
        ("![x](a%20b.png)", "'a b.png'"),
        ("![x](.hidden.png)", "'.hidden.png'"),
        ("![x](figures)", "is a folder"),
        ("![x](not-a-png.png)", "first bytes do not match"),
        ("![x](data.csv)", "is a data file, not an image"),
        ("[x](tool.exe)", "not a course asset type"),
        ("![x](../unit-two/hello-lab/grader/answer.png)", "grader/ or example folder"),
    ],
)
def test_a_bad_asset_reference_is_reported_at_its_line(course_dir: Path, body: str, says: str) -> None:
    put(course_dir, "unit-one/figures/a.png", PNG)
    put(course_dir, "unit-one/not-a-png.png", "plain text")
    put(course_dir, "unit-one/data.csv", "a,b\n")
    put(course_dir, "unit-one/tool.exe", "MZ")
    put(course_dir, "unit-two/hello-lab/grader/answer.png", PNG)
    put(course_dir.parent, "outside.png", PNG)  # ../../ from unit-one/ is the course directory's parent
    with_body(course_dir, f"Intro.\n\n{body}\n")

    problem = the_problem(course_dir, file=LESSON, containing=says)

    assert problem.line == 6
    assert "/course-assets/" not in figure_lesson(load_course(course_dir).course).html


def test_a_missing_asset_names_the_closest_file_in_its_folder(course_dir: Path) -> None:
    put(course_dir, "unit-one/figures/drift-sources.svg", SVG)
    put(course_dir, "unit-one/figures/latency.png", PNG)
    with_body(course_dir, "Intro.\n\n![Where drift comes from](figures/drift-source.svg)\n")

    problem = the_problem(course_dir, file=LESSON, containing="unit-one/figures/drift-source.svg does not exist")

    assert problem.line == 6
    assert "did you mean 'drift-sources.svg'?" in problem.hint
    assert "unit-one/figures/" in problem.hint


def test_a_missing_asset_with_nothing_close_keeps_the_spelling_hint(course_dir: Path) -> None:
    put(course_dir, "unit-one/figures/latency.png", PNG)
    with_body(course_dir, "Intro.\n\n![Flow](figures/architecture.svg)\n")

    problem = the_problem(course_dir, file=LESSON, containing="does not exist")

    assert "did you mean" not in problem.hint
    assert "check the spelling" in problem.hint


def test_a_front_matter_field_may_link_a_data_file_and_a_bad_one_is_reported_at_its_line(course_dir: Path) -> None:
    put(course_dir, "unit-one/data/latencies.csv", "ms\n12\n")
    front = "title: Figures\ndeliverable: A chart of [the latencies](data/latencies.csv)\noutcomes:\n  - Read [it](data/nope.csv)\n"
    write(course_dir, LESSON, lesson(front))

    problem = the_problem(course_dir, file=LESSON, containing="data/nope.csv does not exist")
    assert problem.line == 5  # the outcome's line: front matter starts at file line 2
    course = load_course(course_dir).course
    found = figure_lesson(course)
    digest = hashlib.sha256(b"ms\n12\n").hexdigest()
    assert f'<a href="/course-assets/{digest}/latencies.csv"' in found.header_html["deliverable"]
    assert "unit-one/data/latencies.csv" in course.assets
    assert found.header_html["outcomes"] == ["Read it"]  # a refused file: the text stays, without a link


def test_it_refuses_an_asset_in_a_lab_example_folder(course_dir: Path) -> None:
    lab_yaml = course_dir / "unit-two/hello-lab/lab.yaml"
    example = "examples:\n  - folder: examples/good\n"
    lab_yaml.write_text(lab_yaml.read_text() + example)
    put(course_dir, "unit-two/hello-lab/examples/good/main.py", "print('hello')\n")
    put(course_dir, "unit-two/hello-lab/examples/good/plot.png", PNG)
    with_body(course_dir, "![x](../unit-two/hello-lab/examples/good/plot.png)\n")

    problems = [p for p in load_course(course_dir).problems if p.file == LESSON]

    assert [p.line for p in problems if "grader/ or example folder" in p.message] == [4], problems


@pytest.mark.parametrize(
    "reference",
    [
        "../unit-two/hello-lab/Grader/answer.png",
        "../unit-two/hello-lab/GRADER/answer.png",
        "../Unit-Two/Hello-Lab/grader/answer.png",
    ],
)
def test_it_refuses_an_asset_in_a_grader_folder_spelt_with_other_capitals(course_dir: Path, reference: str) -> None:
    # On a case-insensitive file system (the author's laptop) these name the lab's grader/ folder itself.
    put(course_dir, posixpath.normpath(posixpath.join("unit-one", reference)), PNG)
    with_body(course_dir, f"![x]({reference})\n")

    problem = the_problem(course_dir, file=LESSON, containing="grader/ or example folder")
    assert problem.line == 4


def test_it_refuses_an_asset_in_an_example_folder_spelt_with_other_capitals(course_dir: Path) -> None:
    lab_yaml = course_dir / "unit-two/hello-lab/lab.yaml"
    lab_yaml.write_text(lab_yaml.read_text() + "examples:\n  - folder: examples/good\n")
    put(course_dir, "unit-two/hello-lab/examples/good/main.py", "print('hello')\n")
    put(course_dir, "unit-two/hello-lab/Examples/Good/plot.png", PNG)
    with_body(course_dir, "![x](../unit-two/hello-lab/Examples/Good/plot.png)\n")

    problem = the_problem(course_dir, file=LESSON, containing="grader/ or example folder")
    assert problem.line == 4


def test_it_refuses_a_symlink_leaving_the_course(course_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(PNG)
    (course_dir / "unit-one/leak.png").symlink_to(tmp_path / "secret.png")
    with_body(course_dir, "![x](leak.png)\n")

    problem = the_problem(course_dir, file=LESSON, containing="symbolic link leading outside")
    assert problem.line == 4


def test_it_refuses_a_symlink_into_a_grader_folder(course_dir: Path) -> None:
    put(course_dir, "unit-two/hello-lab/grader/answer.png", PNG)
    os.symlink("../unit-two/hello-lab/grader/answer.png", course_dir / "unit-one/innocent.png")
    with_body(course_dir, "![x](innocent.png)\n")

    problem = the_problem(course_dir, file=LESSON, containing="grader/ or example folder")
    assert problem.line == 4


def test_a_file_above_the_per_file_limit_is_refused(course_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_module, "MAX_ASSET_BYTES", 100)
    put(course_dir, "unit-one/big.csv", "x" * 101)
    with_body(course_dir, "[data](big.csv)\n")

    problem = the_problem(course_dir, file=LESSON, containing="101 bytes, above the 100 byte limit")
    assert problem.line == 4


def test_assets_above_the_course_total_are_refused(course_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_module, "MAX_COURSE_ASSET_BYTES", len(PNG) + 10)
    put(course_dir, "unit-one/one.png", PNG)
    put(course_dir, "unit-one/two.png", PNG + b"\x01")
    with_body(course_dir, "![one](one.png)\n\n![two](two.png)\n\n![one again](one.png)\n")

    result = load_course(course_dir)

    problem = the_problem(course_dir, file=LESSON, containing="byte limit per course")
    assert problem.line == 6
    assert list(result.course.assets) == ["unit-one/one.png"]


def test_a_bad_asset_used_twice_is_reported_at_both_lines(course_dir: Path) -> None:
    with_body(course_dir, "![x](gone.png)\n\n[again](gone.png)\n")

    problems = [p for p in load_course(course_dir).problems if "does not exist" in p.message]

    assert [(p.file, p.line) for p in problems] == [(LESSON, 4), (LESSON, 6)]


def test_a_changed_asset_changes_the_course_content_digest(course_dir: Path) -> None:
    put(course_dir, "unit-one/a.csv", "1\n")
    with_body(course_dir, "[a](a.csv)\n")
    before = load_course(course_dir).course.content_digest

    put(course_dir, "unit-one/a.csv", "2\n")

    assert load_course(course_dir).course.content_digest != before


# --- the render cache -----------------------------------------------------------------------------------------


class DictCache:
    """A render cache holding what an earlier load rendered (the importer keeps the same in the database)."""

    def __init__(self, course: CourseSpec) -> None:
        self.entries = {item.render_key: item.rendered for item in [*course.lessons(), *course.labs()]}

    def lookup(self, keys: list[str]) -> dict[str, Rendered]:
        return {key: self.entries[key] for key in keys if key in self.entries}


def cached_load(course_dir: Path) -> tuple[DictCache, Path]:
    put(course_dir, "unit-one/figures/flow.svg", SVG)
    with_body(course_dir, "![The flow](figures/flow.svg)\n")
    first = load_course(course_dir)
    assert first.problems == []
    return DictCache(first.course), course_dir


def figure_lesson(course: CourseSpec) -> LessonSpec:
    return next(item for item in course.lessons() if item.file == LESSON)


def test_a_cache_hit_still_registers_the_assets(course_dir: Path) -> None:
    cache, root = cached_load(course_dir)
    recorded = cache.entries[figure_lesson(load_course(root).course).render_key].resolved
    assert list(recorded) == ["image:figures/flow.svg"]

    result = load_course(root, render_cache=cache)

    assert result.problems == []
    assert figure_lesson(result.course).rendered.fresh is False
    assert result.course.assets["unit-one/figures/flow.svg"].sha256 == hashlib.sha256(SVG.encode()).hexdigest()


def test_a_changed_asset_invalidates_the_cache_hit(course_dir: Path) -> None:
    cache, root = cached_load(course_dir)
    changed = SVG.replace("teal", "navy")
    put(root, "unit-one/figures/flow.svg", changed)

    result = load_course(root, render_cache=cache)

    lesson_spec = figure_lesson(result.course)
    assert lesson_spec.rendered.fresh is True
    assert hashlib.sha256(changed.encode()).hexdigest() in lesson_spec.html


@pytest.mark.parametrize("change", ["remove", "script"])
def test_a_removed_or_now_invalid_asset_invalidates_the_hit_and_is_reported(course_dir: Path, change: str) -> None:
    cache, root = cached_load(course_dir)
    if change == "remove":
        (root / "unit-one/figures/flow.svg").unlink()
    else:
        put(root, "unit-one/figures/flow.svg", SVG.replace("</svg>", "<script>x()</script></svg>"))

    result = load_course(root, render_cache=cache)

    assert [(p.file, p.line) for p in result.problems] == [(LESSON, 4)]
    assert result.course.assets == {}
