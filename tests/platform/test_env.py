import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.env import ImproperlyConfiguredEnv, env_bool, env_int, env_list, env_str

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "enabled"])
def test_env_bool_rejects_a_non_boolean_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("SHIPSHAPE_TEST_FLAG", raw)

    with pytest.raises(ImproperlyConfiguredEnv, match=rf"SHIPSHAPE_TEST_FLAG='{raw}' is not a boolean"):
        env_bool("SHIPSHAPE_TEST_FLAG", default=False)


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("Yes", True), (" off ", False), ("0", False)])
def test_env_bool_accepts_the_documented_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("SHIPSHAPE_TEST_FLAG", raw)

    assert env_bool("SHIPSHAPE_TEST_FLAG", default=not expected) is expected


def test_env_int_rejects_a_non_integer_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SHIPSHAPE_TEST_COUNT", "12abc")

    with pytest.raises(ImproperlyConfiguredEnv, match="SHIPSHAPE_TEST_COUNT='12abc' is not an integer"):
        env_int("SHIPSHAPE_TEST_COUNT", 3)


def test_env_int_rejects_a_value_below_its_minimum(monkeypatch):
    monkeypatch.setenv("SHIPSHAPE_TEST_COUNT", "-1")

    with pytest.raises(ImproperlyConfiguredEnv, match="SHIPSHAPE_TEST_COUNT=-1 is below the minimum of 0"):
        env_int("SHIPSHAPE_TEST_COUNT", 3, minimum=0)


def test_env_str_without_default_names_the_missing_variable(monkeypatch):
    monkeypatch.delenv("SHIPSHAPE_TEST_MISSING", raising=False)

    with pytest.raises(ImproperlyConfiguredEnv, match="SHIPSHAPE_TEST_MISSING is not set"):
        env_str("SHIPSHAPE_TEST_MISSING")


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("SHIPSHAPE_TEST_HOSTS", " a.example , ,b.example,")

    assert env_list("SHIPSHAPE_TEST_HOSTS", []) == ["a.example", "b.example"]


def _load_settings(**overrides: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SHIPSHAPE_", "DJANGO_"))}
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=REPO_ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_refuse_to_start_on_a_bad_boolean():
    result = _load_settings(SHIPSHAPE_DEV="1", SHIPSHAPE_DEBUG="sometimes")

    assert result.returncode != 0
    assert "SHIPSHAPE_DEBUG='sometimes' is not a boolean" in result.stderr


def test_settings_require_a_secret_key_outside_development():
    result = _load_settings()

    assert result.returncode != 0
    assert "SHIPSHAPE_SECRET_KEY" in result.stderr


def test_settings_start_in_development_without_a_secret():
    result = _load_settings(SHIPSHAPE_DEV="1")

    assert result.returncode == 0, result.stderr
