"""Hidden tests for lab-hello-pinned. They run with the submission's folder as the working directory."""

from pathlib import Path

import greet


def test_greets_by_name():
    assert greet.greet("Ada") == "Hello, Ada!"


def test_ignores_surrounding_spaces():
    assert greet.greet("  Grace ") == "Hello, Grace!"


def test_defaults_to_world():
    assert greet.greet() == "Hello, world!"
    assert greet.greet("") == "Hello, world!"


def test_every_requirement_is_pinned():
    lines = Path("requirements.lock").read_text().splitlines()
    requirements = [line.split("#", 1)[0].strip() for line in lines]
    unpinned = [r for r in requirements if r and "==" not in r]
    assert not unpinned, f"not pinned with ==: {unpinned}"
