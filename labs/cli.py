"""`shipshape`: submit a lab from the terminal and follow its grading.

    shipshape submit COURSE/LAB PATH     # PATH: a folder (zipped for you) or a .zip
    shipshape status REVISION_ID

Configuration comes from the environment: SHIPSHAPE_URL (the site, e.g. http://127.0.0.1:8000) and
SHIPSHAPE_TOKEN (create one on the site at /account/tokens/). Exit codes: 0 graded, 1 failed or rejected,
2 usage or configuration errors. Standard library plus requests only, so it runs anywhere the course does.
"""

from __future__ import annotations

import argparse
import email.utils
import io
import os
import sys
import time
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import requests

EXIT_GRADED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules"}
SKIP_SUFFIXES = (".pyc", ".pyo")
# Fixed timestamp: the same folder always zips to the same bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FINISHED_STATES = {"graded", "failed"}
# How long to wait after a 429 that does not say (the server's own answers always say).
DEFAULT_RETRY_SECONDS = 5.0


class UsageError(Exception):
    pass


class Config:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Config:
        url = env.get("SHIPSHAPE_URL", "").strip()
        token = env.get("SHIPSHAPE_TOKEN", "").strip()
        missing = [name for name, value in (("SHIPSHAPE_URL", url), ("SHIPSHAPE_TOKEN", token)) if not value]
        if missing:
            raise UsageError(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. Log in to the course site, "
                "open /account/tokens/, create a token and run the two `export` lines it shows."
            )
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"SHIPSHAPE_URL={url!r} must start with http:// or https://.")
        return cls(url, token)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}


def zip_folder(folder: Path) -> bytes:
    """Zip `folder`'s contents deterministically (sorted, fixed timestamps and modes), skipping caches, VCS
    folders, virtualenvs and symlinks."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in _walk(folder):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=ZIP_EPOCH)
            info.external_attr = 0o100644 << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not Path(current, d).is_symlink())
        for name in sorted(files):
            path = Path(current, name)
            if path.is_symlink() or name.endswith(SKIP_SUFFIXES) or not path.is_file():
                continue
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _archive_for(path: Path) -> tuple[str, bytes]:
    if path.is_dir():
        return f"{path.resolve().name or 'submission'}.zip", zip_folder(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        return path.name, path.read_bytes()
    if path.is_file():
        raise UsageError(f"{path} is not a .zip. Pass the folder of your submission or a .zip of it.")
    raise UsageError(f"{path} does not exist.")


def _request(method: str, url: str, config: Config, **kwargs: Any) -> requests.Response:
    try:
        return requests.request(method, url, headers=config.headers(), timeout=60, **kwargs)
    except requests.RequestException as exc:
        raise ConnectionError(f"Could not reach {config.url}: {exc}. Is SHIPSHAPE_URL right?") from exc


def _print_error(body: dict[str, Any], out: TextIO) -> None:
    print(f"error: {body.get('error', 'the request failed')}", file=out)
    for problem in body.get("problems") or []:
        print(f"  - {problem}", file=out)
    if body.get("hint"):
        print(f"hint: {body['hint']}", file=out)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"error": f"unexpected answer from the server (HTTP {response.status_code})"}
    return body if isinstance(body, dict) else {"error": "unexpected answer from the server"}


def follow(config: Config, revision_id: int, out: TextIO, *, poll_seconds: float, timeout_seconds: float) -> int:
    """Print phases and check results as they arrive; return the exit code once the revision is finished."""
    seen_checks: set[str] = set()
    last_phase = None
    last_position = None
    started = time.monotonic()
    while True:
        response = _request("GET", f"{config.url}/api/revisions/{revision_id}", config)
        body = _json(response)
        wait = retry_after_seconds(response, body)
        if wait is not None:
            # The server asks us to slow down (429) or to come back (503): the grading goes on meanwhile.
            left = timeout_seconds - (time.monotonic() - started)
            reason = body.get("error") or f"HTTP {response.status_code}"
            if wait > left:
                page = f"{config.url}/revisions/{revision_id}/"
                print(f"the server asks to wait {wait:.0f} s ({reason}), past --timeout; see {page}", file=out)
                return EXIT_FAILED
            print(f"the server asks to wait {wait:.0f} s ({reason}); following again after that", file=out)
            sleep(wait)
            continue
        if response.status_code != 200:
            _print_error(body, out)
            return EXIT_FAILED
        position = body.get("queue_position")
        if position is not None and position != last_position:
            print(f"queued: {position} revision{'s' if position != 1 else ''} ahead", file=out)
            last_position = position
        if body.get("phase") != last_phase and body.get("phase") not in (None, "queued"):
            print(f"phase: {body['phase']}", file=out)
        last_phase = body.get("phase")
        for check in body.get("checks") or []:
            if check["id"] in seen_checks:
                continue
            seen_checks.add(check["id"])
            if check.get("status") == "hidden":
                print(
                    f"  [hidden] {check['id']}: hidden until {check.get('hidden_until') or 'the course staff reveal it'}",
                    file=out,
                )
                continue
            print(f"  [{check['status']}] {check['id']} {_points(check)}: {check.get('message', '')}", file=out)
            if check.get("hint") and check.get("status") != "pass":
                print(f"      hint: {check['hint']}", file=out)
        if body.get("finished") or body.get("state") in FINISHED_STATES:
            return _summary(body, out)
        if time.monotonic() - started > timeout_seconds:
            print(f"still {body.get('state')} after {timeout_seconds:.0f} s; see {body.get('url')}", file=out)
            return EXIT_FAILED
        sleep(poll_seconds)


def sleep(seconds: float) -> None:
    """Every wait of the CLI, in one place (tests replace it)."""
    time.sleep(seconds)


def retry_after_seconds(response: requests.Response, body: dict[str, Any]) -> float | None:
    """How long the server asks us to wait before asking again, or None when it does not ask.

    A 429 always asks (by `Retry-After` in seconds or as an HTTP date, else the body's `retry_in_seconds`, else
    a few seconds); a 503 asks only with a `Retry-After` header (the server had trouble on its side)."""
    if response.status_code not in (429, 503):
        return None
    header = response.headers.get("Retry-After", "").strip()
    if header:
        if header.isdigit():
            return float(header)
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    if response.status_code != 429:
        return None
    retry_in = body.get("retry_in_seconds")
    return float(retry_in) if isinstance(retry_in, int | float) and retry_in >= 0 else DEFAULT_RETRY_SECONDS


def _points(check: dict[str, Any]) -> str:
    if check.get("points") is None:
        return ""
    return f"({_fmt_num(check['points'])}/{_fmt_num(check.get('max_points'))})"


def _fmt_num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _summary(body: dict[str, Any], out: TextIO) -> int:
    if body["state"] == "graded":
        print(f"graded: {_fmt_num(body.get('score'))}/{_fmt_num(body.get('max_score'))}", file=out)
        for category, score in (body.get("scores_by_category") or {}).items():
            print(f"  {category}: {score.get('score')}/{score.get('max')}", file=out)
        print(body.get("url", ""), file=out)
        return EXIT_GRADED
    failure = body.get("failure") or {}
    print(f"failed: {failure.get('message') or failure.get('reason') or 'see the revision page'}", file=out)
    print(body.get("url", ""), file=out)
    return EXIT_FAILED


def cmd_submit(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    course, _, lab = args.lab.partition("/")
    if not course or not lab or "/" in lab:
        raise UsageError(
            f"LAB must look like COURSE/LAB (for example shipping-production-systems/quote-service), not {args.lab!r}."
        )
    name, data = _archive_for(Path(args.path))
    print(f"uploading {name} ({len(data)} bytes) to {course}/{lab}", file=out)
    response = _request(
        "POST",
        f"{config.url}/api/labs/{course}/{lab}/revisions",
        config,
        files={"archive": (name, data, "application/zip")},
    )
    body = _json(response)
    if response.status_code != 201:
        _print_error(body, err)
        return EXIT_USAGE if response.status_code == 401 else EXIT_FAILED
    print(f"revision {body['number']} (id {body['id']}) {body['state']}: {body['url']}", file=out)
    if args.no_follow:
        return EXIT_GRADED
    return follow(config, body["id"], out, poll_seconds=args.poll, timeout_seconds=args.timeout)


def cmd_status(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    if args.follow:
        return follow(config, args.revision_id, out, poll_seconds=args.poll, timeout_seconds=args.timeout)
    response = _request("GET", f"{config.url}/api/revisions/{args.revision_id}", config)
    body = _json(response)
    if response.status_code != 200:
        _print_error(body, err)
        return EXIT_USAGE if response.status_code == 401 else EXIT_FAILED
    print(f"revision {body['number']} of {body['course']}/{body['lab']}: {body['state']} ({body['phase']})", file=out)
    for check in body.get("checks") or []:
        print(f"  [{check['status']}] {check['id']} {_points(check)} {check.get('message', '')}".rstrip(), file=out)
    if body.get("state") in FINISHED_STATES:
        return _summary(body, out)
    return EXIT_GRADED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shipshape", description="Submit Shipshape labs and follow their grading.")
    sub = parser.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit", help="upload a folder or .zip as a new revision and follow its grading")
    submit.add_argument("lab", metavar="LAB", help="COURSE/LAB, as in the lab page's address")
    submit.add_argument("path", metavar="PATH", help="your submission's folder, or a .zip of it")
    submit.add_argument("--no-follow", action="store_true", help="print the revision and exit without waiting")
    status = sub.add_parser("status", help="show a revision's state and check results")
    status.add_argument("revision_id", metavar="REVISION_ID", type=int)
    status.add_argument("--follow", action="store_true", help="keep polling until the revision is finished")
    for command in (submit, status):
        command.add_argument("--poll", type=float, default=1.0, help="seconds between status polls (default 1)")
        command.add_argument("--timeout", type=float, default=1800.0, help="give up following after this many seconds")
    return parser


def main(argv: Sequence[str] | None = None, *, env: dict[str, str] | None = None) -> int:
    out, err = sys.stdout, sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage
        return EXIT_USAGE if exc.code else EXIT_GRADED
    try:
        config = Config.from_env(dict(os.environ) if env is None else env)
        handler = cmd_submit if args.command == "submit" else cmd_status
        return handler(args, config, out, err)
    except UsageError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    except ConnectionError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; the revision keeps being graded on the server", file=err)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
