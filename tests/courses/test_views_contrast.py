"""The site's colour palettes meet WCAG AA contrast (4.5:1 for text) in both themes, read from site.css itself."""

import re
from pathlib import Path

import pytest

CSS = (Path(__file__).resolve().parents[2] / "courses/static/courses/css/site.css").read_text(encoding="utf-8")


def _palette(selector_regex: str) -> dict[str, str]:
    block = re.search(selector_regex + r"\s*\{(.*?)\n\s*\}", CSS, re.S).group(1)
    return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", block))


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


LIGHT = _palette(r":root")
DARK = _palette(r':root\[data-theme="dark"\]')
TEXT_PAIRS = [
    (fg, bg) for fg in ("fg", "muted", "link", "accent", "ok", "danger", "warn") for bg in ("bg", "surface")
] + [("accent-fg", "accent")]


def test_both_dark_palettes_in_the_stylesheet_are_identical():
    system_dark = _palette(r':root:not\(\[data-theme="light"\]\)')
    assert system_dark == DARK


@pytest.mark.parametrize("name, palette", [("light", LIGHT), ("dark", DARK)])
def test_text_colours_meet_wcag_aa_on_their_backgrounds(name, palette):
    failures = [
        f"{fg} on {bg}: {_contrast(palette[fg], palette[bg]):.2f}"
        for fg, bg in TEXT_PAIRS
        if _contrast(palette[fg], palette[bg]) < 4.5
    ]
    assert failures == [], f"{name} theme below 4.5:1: {failures}"


@pytest.mark.parametrize("name, palette", [("light", LIGHT), ("dark", DARK)])
def test_focus_ring_is_visible_against_the_page(name, palette):
    assert _contrast(palette["focus"], palette["bg"]) >= 3.0  # WCAG 1.4.11 non-text contrast
