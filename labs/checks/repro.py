"""Reproducibility check kinds: pinned locks, offline installs, deterministic artifacts, truthful manifests,
Dockerfile hygiene.

Judgement is pure functions over text and bytes (unit-tested without Docker); the check classes only gather
evidence. Evidence about the environment comes from trusted sources: files read on the host from the stored
submission, and programs run as the grader user (`python -I`) in the sandbox.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, ClassVar

from labs.checks.base import Check, CheckOutcome, GradingContext, register

logger = logging.getLogger(__name__)

# --- lock files ------------------------------------------------------------------------------------------------

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
# name==version or name===version (one version either way), extras, an environment marker.
_PINNED = re.compile(rf"^(?P<name>{_NAME})\s*(?:\[[^\]]*\])?\s*===?\s*(?P<version>[A-Za-z0-9.!+_-]+)\s*(?:;.*)?$")
_NAME_ONLY = re.compile(rf"^(?P<name>{_NAME})")
_COMMENT = re.compile(r"(^|\s)#.*$")  # pip's rule: a # at the start or after whitespace starts a comment


def normalise_name(name: str) -> str:
    """PEP 503 normalised project name (Prometheus_Client -> prometheus-client)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class LockEntry:
    line: int
    text: str
    name: str  # normalised; "" when the line names no project (a URL, an option)
    version: str  # "" when not pinned with ==


def parse_lock(text: str) -> list[LockEntry]:
    """Requirement lines of a pip requirements/lock file, continuation lines joined, hashes removed."""
    entries: list[LockEntry] = []
    start, buffer = 0, ""
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = _COMMENT.sub("", raw).rstrip()
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        logical, buffer = buffer.strip(), ""
        if not logical:
            continue
        requirement = re.sub(r"\s--hash[= ]\S+", "", " " + logical).strip()
        if requirement.startswith("--hash"):
            continue
        pinned = _PINNED.match(requirement)
        if pinned:
            entries.append(LockEntry(start, logical, normalise_name(pinned["name"]), pinned["version"]))
            continue
        named = _NAME_ONLY.match(requirement) if not requirement.startswith("-") else None
        entries.append(LockEntry(start, logical, normalise_name(named["name"]) if named else "", ""))
    return entries


def off_wheelhouse_lines(text: str) -> list[LockEntry]:
    """Lines that install from somewhere other than the index pip is given: options (-e, -r, -f, -i, ...),
    URLs, `name @ url` and local paths."""
    return [
        entry
        for entry in parse_lock(text)
        if not entry.name
        or "://" in entry.text
        or re.search(r"\s@\s|^[^\s;]+@", entry.text)
        or entry.text.startswith((".", "/", "~"))
    ]


def loose_requirements(text: str) -> list[LockEntry]:
    """Lines that do not pin exactly one version with `name==version` (options like -e or URLs included)."""
    return [entry for entry in parse_lock(text) if not entry.version]


_NO_SPACE = re.compile(r"No space left on device|\[Errno 28\]|Disk quota exceeded|\[Errno 122\]")
_PIP_CRASH = re.compile(r"^ERROR: Exception:|^Traceback \(most recent call last\)", re.M)


def pip_install_problems(stderr: str) -> list[str]:
    """The packages pip could not find or reconcile, from its error output."""
    problems = []
    for match in re.finditer(r"No matching distribution found for (\S+)", stderr):
        problems.append(f"{match[1]} is not in the platform's wheelhouse")
    for match in re.finditer(r"Could not find a version that satisfies the requirement (\S+)", stderr):
        name = f"{match[1]} is not in the platform's wheelhouse"
        if name not in problems:
            problems.append(name)
    for match in re.finditer(r"Cannot install (.+?) because these package versions have conflicting", stderr):
        problems.append(f"conflicting requirements: {match[1]}")
    if not problems and re.search(r"ResolutionImpossible|conflict", stderr):
        problems.append("the requirements conflict with each other")
    for match in re.finditer(
        r"^ERROR: (Invalid requirement: .{1,200}|Double requirement given: .{1,200})$", stderr, re.M
    ):
        problems.append(match[1].rstrip("."))
    if re.search(r"THESE PACKAGES DO NOT MATCH THE HASHES", stderr):
        problems.append("a --hash in the lock does not match the wheelhouse's file")
    if re.search(r"Hashes are required in --require-hashes mode", stderr):
        problems.append("some lines have --hash options and others do not (pip then requires a hash on every line)")
    return problems


def pip_failure(stderr: str) -> tuple[str, list[str]]:
    """Whose failure a failed offline install is: ("ours", [why]) when pip ran out of room or crashed, ("lock",
    [problems]) when it rejected the lock (a package or version the wheelhouse lacks, conflicts, hashes, an
    invalid line), ("ours", [...]) when pip says nothing recognisable."""
    if _NO_SPACE.search(stderr):
        return "ours", ["the grader's install space ran out"]
    problems = pip_install_problems(stderr)
    if problems:
        return "lock", problems
    if _PIP_CRASH.search(stderr):
        return "ours", ["pip crashed"]
    errors = re.findall(r"^ERROR: (.{1,300})$", stderr, re.M)
    if errors and not re.search(r"OSError|PermissionError|Errno", errors[0]):
        return "lock", [errors[0].rstrip(".")]
    return "ours", ["pip failed without naming a problem with the lock"]


# --- byte comparison -------------------------------------------------------------------------------------------


def first_difference(a: bytes, b: bytes) -> dict[str, Any] | None:
    """Where two artifacts first differ: byte offset, line number and both lines (None when identical)."""
    if a == b:
        return None
    offset = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    line = a[:offset].count(b"\n") + 1
    a_lines, b_lines = a.splitlines(), b.splitlines()

    def line_text(lines: list[bytes]) -> str:
        return lines[line - 1].decode("utf-8", "replace")[:200] if line - 1 < len(lines) else "<end of file>"

    return {"byte": offset, "line": line, "first": line_text(a_lines), "second": line_text(b_lines)}


def without_keys(data: bytes | None, keys: set[str]) -> Any:
    """A JSON artifact with the named keys removed at every depth (the raw bytes when it is not JSON).

    Seed sensitivity compares models, not the seed the file records about itself: a constant model that
    writes {"seed": N} beside it must not pass.
    """
    try:
        doc = json.loads(data or b"")
    except (ValueError, RecursionError):
        return data

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in keys}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(doc)


# --- versions --------------------------------------------------------------------------------------------------

_PEP440 = re.compile(
    r"""^\s*v?
    (?:(?P<epoch>[0-9]+)!)?
    (?P<release>[0-9]+(?:\.[0-9]+)*)
    (?:[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?:(?:-(?P<post_n1>[0-9]+))|(?:[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?))?
    (?:[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    \s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_PRE = {"alpha": "a", "a": "a", "beta": "b", "b": "b", "c": "rc", "rc": "rc", "pre": "rc", "preview": "rc"}


def version_key(version: str) -> tuple | None:
    """A PEP 440 version in comparable form (0.26 and 0.26.0, 1.0RC1 and 1.0rc1 are equal); None when the text
    is not a PEP 440 version."""
    match = _PEP440.match(version)
    if not match:
        return None
    release = [int(part) for part in match["release"].split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    pre = (_PRE[match["pre_l"].lower()], int(match["pre_n"] or 0)) if match["pre_l"] else None
    post_number = match["post_n1"] or match["post_n2"]
    post = int(post_number or 0) if (match["post_l"] or match["post_n1"]) else None
    dev = int(match["dev_n"] or 0) if match["dev_l"] else None
    local = (
        tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"[-_.]", match["local"]))
        if match["local"]
        else None
    )
    return (int(match["epoch"] or 0), tuple(release), pre, post, dev, local)


def same_version(claimed: str, actual: str) -> bool:
    """Equal as PEP 440 versions, or (for versions that are not PEP 440) as trimmed, case-folded strings."""
    a, b = version_key(claimed), version_key(actual)
    if a is not None and b is not None:
        return a == b
    return claimed.strip().lower() == actual.strip().lower()


# --- manifests -------------------------------------------------------------------------------------------------


def _seed_matches(claimed: Any, seed: int) -> bool:
    if isinstance(claimed, bool):
        return False
    if isinstance(claimed, int | float):
        return claimed == seed
    return isinstance(claimed, str) and claimed.strip() == str(seed)


def _python_matches(claimed: Any, python_version: str) -> bool:
    """ "3.11.2", sys.version ("3.11.2 (main, ...) [GCC ...]") and "Python 3.11.2" all say the same thing."""
    words = str(claimed).split() if isinstance(claimed, str) else []
    if words and words[0].lower() in ("python", "cpython"):
        words = words[1:]
    return bool(words) and words[0] == python_version


def _claimed_version(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def manifest_problems(
    manifest: Any,
    *,
    seed: int,
    python_version: str,
    installed: dict[str, str],
    locked: list[str],
    code_sha256: str,
    code_file: str = "train.py",
) -> list[str]:
    """Ways the manifest disagrees with what the sandbox had and what the code was.

    installed: normalised name -> version the learner's `python` sees (a grader-side program reads it).
    locked: normalised names in the lock file; those installed must appear in the manifest.
    Names compare in PEP 503 form (Prometheus_Client is prometheus-client), versions as PEP 440 versions (0.26 is
    0.26.0); an empty `packages` is truthful when the lock names nothing installed.
    """
    if not isinstance(manifest, dict):
        return ["run_manifest.json is not a JSON object"]
    problems = []
    if not _seed_matches(manifest.get("seed"), seed):
        problems.append(f"seed is {str(manifest.get('seed'))[:40]!r}, but the run used --seed {seed}")
    if not _python_matches(manifest.get("python"), python_version):
        problems.append(
            f"python is {str(manifest.get('python', ''))[:60]!r}, but the sandbox runs Python {python_version}"
        )
    packages = manifest.get("packages")
    if not isinstance(packages, dict):
        problems.append("packages must be an object mapping package names to versions")
        packages = {}
    claimed: dict[str, str] = {}
    for raw_name, raw_version in list(packages.items())[:500]:
        name, version = normalise_name(str(raw_name))[:100], _claimed_version(raw_version)
        actual = installed.get(name)
        if raw_version is None:  # "locked but not installed": truthful when it is not
            claimed[name] = ""
            if actual is not None:
                problems.append(f"packages says {name} is not installed, but {name} {actual} is")
            continue
        if version is None:
            problems.append(f"packages gives {name} the version {str(raw_version)[:40]!r}, which is not a string")
            continue
        claimed[name] = version
        if actual is None:
            problems.append(f"packages lists {name} {version[:40]}, which is not installed in the sandbox")
        elif not same_version(version, actual):
            problems.append(f"packages says {name} {version[:40]}, but {name} {actual} is installed")
    for name in dict.fromkeys(locked):
        if name in installed and name not in claimed:
            problems.append(f"packages leaves out {name} {installed[name]}, which the lock file requires")
    recorded = manifest.get("code_sha256")
    recorded_hex = recorded.strip().lower().removeprefix("sha256:") if isinstance(recorded, str) else None
    if recorded_hex != code_sha256:
        problems.append(f"code_sha256 is {str(recorded)[:16]!r}…, but {code_file} hashes to {code_sha256[:16]}…")
    return problems


# --- Dockerfiles -----------------------------------------------------------------------------------------------

# Names of ENV/ARG variables that hold a secret: compared per word of the name, so TOKENIZERS_PARALLELISM is no
# token; names that say where a secret lives (…_FILE, …_PATH, …_DIR) are not secrets themselves.
_SECRET_WORDS = re.compile(
    r"(?i)(password|passwd|secret|credential|(^|_)tokens?(_|$)|(^|_)(api|private|access)_?key(s)?(_|$)|apikey)"
)
_SECRET_REFERENCE = re.compile(r"(?i)_(file|path|dir)$")
_SECRET_FILE = re.compile(r"(?i)(^|/)(\.env|\.netrc|\.pypirc|id_rsa|id_ed25519|.*\.pem|.*\.key|credentials.*)$")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_CODE_SOURCES = re.compile(r"(^\.$|^\./?$|\.py$|^\*$|^src/?|^app/?)")
_PIP_INSTALL = re.compile(r"\bpip(?:3(?:\.\d+)?)?\s+install\b")
_PIP_NO_CACHE = re.compile(
    r"--no-cache-dir|type=cache|\bPIP_NO_CACHE_DIR=\S|\bpip(?:3(?:\.\d+)?)?\s+cache\s+(purge|remove)|"
    r"rm\s+(-\w+\s+)*\S*\.cache/pip"
)
_HEREDOC = re.compile(r"<<(-?)[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?")


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    value: str


@dataclass(frozen=True)
class DockerProblem:
    line: int  # 0: about the file as a whole
    rule: str
    message: str


def _instruction(start: int, text: str) -> Instruction:
    parts = re.split(r"\s+", text.strip(), maxsplit=1)
    keyword, value = parts[0], parts[1] if len(parts) > 1 else ""
    return Instruction(start, keyword.upper(), value.strip())


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with the line each starts on; continuation lines joined, comments dropped, heredoc bodies
    (RUN <<EOF ... EOF) kept as part of their instruction."""
    out: list[Instruction] = []
    lines = text.removeprefix("\ufeff").splitlines()
    buffer, start, number = "", 0, 0
    while number < len(lines):
        raw = lines[number]
        number += 1
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continuation are ignored by Docker too
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        for dash, word in _HEREDOC.findall(buffer) if re.match(r"(?i)\s*(RUN|COPY|ADD)\b", buffer) else []:
            body = []
            while number < len(lines):
                line = lines[number]
                number += 1
                if (line.lstrip("\t") if dash else line).strip() == word:
                    break
                body.append(line.strip())
            buffer += "\n" + "\n".join(body)
        out.append(_instruction(start, buffer))
        buffer = ""
    if buffer:
        out.append(_instruction(start, buffer))
    return out


def _copy_sources(value: str) -> list[str]:
    """The sources of a COPY/ADD (options dropped). Docker reads the JSON form when it parses, the words split on
    whitespace otherwise (no shell quoting), so nothing here can fail on a learner's line."""
    parts: Any = None
    if value.startswith("["):
        try:
            parts = json.loads(value.split("\n", 1)[0])
        except (ValueError, RecursionError):
            parts = None
    if not isinstance(parts, list):
        parts = value.split("\n", 1)[0].split()
    parts = [str(p) for p in parts if not str(p).startswith("--")]
    return parts[:-1]


def _is_root(user: str) -> bool:
    """USER root, USER 0, USER 000:0, USER "root" ..."""
    name = user.strip().strip("\"'").split(":")[0].strip()
    return name == "root" or (name.isdigit() and int(name) == 0)


def _arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """ARG defaults declared before the first FROM (the only ones a FROM line can use)."""
    defaults: dict[str, str] = {}
    for inst in instructions:
        if inst.keyword == "FROM":
            break
        if inst.keyword == "ARG":
            for name, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", inst.value):
                defaults[name] = value.strip("\"'")
    return defaults


def _secret_names(inst: Instruction) -> list[str]:
    """Variables an ENV or ARG line sets (ENV A=1 B=2, ENV A 1, ARG A, ARG A=1)."""
    words = inst.value.split()
    if not words:
        return []
    if "=" in words[0]:
        return re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", inst.value)
    # ENV NAME value (one variable); ARG NAME [NAME2 ...]
    return words[:1] if inst.keyword == "ENV" else [w.split("=", 1)[0] for w in words]


def dockerfile_problems(text: str) -> list[DockerProblem]:
    """Hygiene rules: pinned bases, non-root USER, HEALTHCHECK, deps before code, no secrets, no caches."""
    instructions = parse_dockerfile(text)
    problems: list[DockerProblem] = []
    if not any(i.keyword == "FROM" for i in instructions):
        return [DockerProblem(0, "base-image", "there is no FROM line: start from a pinned base image")]
    stages: set[str] = set()
    defaults = _arg_defaults(instructions)
    final_start = max(n for n, i in enumerate(instructions) if i.keyword == "FROM")
    for inst in instructions:
        if inst.keyword != "FROM":
            continue
        words = [w for w in inst.value.split() if not w.startswith("--")]
        image = words[0] if words else ""
        # FROM ${BASE} with ARG BASE=... before it: the default is what a plain `docker build` uses.
        image = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: defaults.get(m[1], m[0]), image)
        if len(words) >= 3 and words[1].upper() == "AS":
            stages.add(words[2].lower())
        if image.lower() in stages or image == "scratch":
            continue
        name_tag = image.split("@", 1)[0]
        tag = name_tag.rsplit(":", 1)[1] if ":" in name_tag.rsplit("/", 1)[-1] else ""
        if tag == "latest":
            problems.append(DockerProblem(inst.line, "no-latest", f"{image} uses the moving tag latest"))
        elif not tag:
            problems.append(DockerProblem(inst.line, "base-tag", f"{image} has no tag (it means latest)"))
        if not _DIGEST.search(image):
            problems.append(
                DockerProblem(inst.line, "base-digest", f"{image} is not pinned by digest (@sha256:<64 hex>)")
            )
    final = instructions[final_start:]
    users = [i for i in final if i.keyword == "USER"]
    if not users:
        problems.append(DockerProblem(0, "non-root", "the final stage has no USER line, so it runs as root"))
    elif _is_root(users[-1].value):
        problems.append(DockerProblem(users[-1].line, "non-root", f"USER {users[-1].value} runs as root"))
    # Only the final stage's HEALTHCHECK ends up in the image (an earlier stage's is thrown away with it).
    checks = [i for i in final if i.keyword == "HEALTHCHECK"]
    if not checks or checks[-1].value.upper().startswith("NONE"):
        problems.append(DockerProblem(0, "healthcheck", "there is no HEALTHCHECK, so nothing notices a hung service"))
    install = next((i for i in final if i.keyword == "RUN" and _PIP_INSTALL.search(i.value)), None)
    code_copy = next(
        (
            i
            for i in final
            if i.keyword in ("COPY", "ADD")
            and "--from" not in i.value
            and any(_CODE_SOURCES.search(src) for src in _copy_sources(i.value))
        ),
        None,
    )
    if install and code_copy and code_copy.line < install.line:
        problems.append(
            DockerProblem(
                code_copy.line,
                "deps-before-code",
                f"code is copied (line {code_copy.line}) before dependencies are installed (line {install.line}),"
                " so every code change reinstalls them",
            )
        )
    # ENV applies from its line to the end of its stage: an earlier stage's PIP_NO_CACHE_DIR does not count.
    # Caches count only in the final stage: an earlier stage's layers are not part of the image.
    pip_cache_off = False
    for position, inst in enumerate(instructions):
        if inst.keyword == "FROM":
            pip_cache_off = False
        elif inst.keyword == "ENV" and re.search(r"PIP_NO_CACHE_DIR\s*[= ]\s*\S", inst.value, re.I):
            pip_cache_off = True
        if inst.keyword in ("ENV", "ARG"):
            for name in _secret_names(inst):
                if _SECRET_WORDS.search(name) and not _SECRET_REFERENCE.search(name):
                    problems.append(
                        DockerProblem(inst.line, "no-secrets", f"{inst.keyword} {name} bakes a secret into the image")
                    )
                    break
        if inst.keyword in ("COPY", "ADD"):
            for src in _copy_sources(inst.value):
                if _SECRET_FILE.search(src):
                    problems.append(DockerProblem(inst.line, "no-secrets", f"{src} looks like a secret file"))
        if inst.keyword == "RUN" and position >= final_start:
            if _PIP_INSTALL.search(inst.value) and not _PIP_NO_CACHE.search(inst.value) and not pip_cache_off:
                problems.append(
                    DockerProblem(inst.line, "no-cache", "pip install keeps its download cache in the image")
                )
            if (
                re.search(r"\bapt(-get)? +(\S+ +)*install\b", inst.value)
                and "/var/lib/apt/lists" not in inst.value
                and "type=cache" not in inst.value
            ):
                problems.append(
                    DockerProblem(inst.line, "no-cache", "apt-get install leaves /var/lib/apt/lists in the layer")
                )
    return sorted(problems, key=lambda p: (p.line, p.rule))


# --- helpers shared by the classes -----------------------------------------------------------------------------

# The Python version and installed packages as the learner's `python train.py` sees them: the script's folder
# first (sys.path[0]), then the image's site-packages (the venv has no user site). Run as the learner with -I, so
# none of the learner's code runs and nothing the learner cannot read is read; it reports only the names asked
# for on stdin (a JSON list), so its output stays small whatever the folder holds.
INSTALLED_PROGRAM = (
    "import importlib.metadata as m, json, platform, re, sys\n"
    "wanted = set(json.loads(sys.stdin.read() or '[]'))\n"
    "found = {}\n"
    "for n, d in enumerate(m.distributions(path=[sys.argv[1], *sys.path])):\n"
    "    if n > 20000:\n"
    "        break\n"
    "    try:\n"
    "        name = re.sub(r'[-_.]+', '-', str(d.metadata['Name'] or '')).lower()\n"
    "        if name in wanted and name not in found:\n"
    "            found[name] = str(d.version)[:100]\n"
    "    except Exception:\n"
    "        continue\n"
    "print(json.dumps({'python': platform.python_version(), 'packages': found}))\n"
)
# The grader user can read what the learner cannot (/grader): a learner's symlink must never make it read
# such a file on the learner's behalf. Paths are walked from /work one component at a time with O_NOFOLLOW
# (no window between a check and the open for a leftover learner process to swap a folder for a link), and
# only regular files are read.
_SAFE_OPEN = (
    "import os, stat, sys\n"
    "def safe_open(p):\n"
    "    parts = p.split('/')\n"
    "    if parts[:2] != ['', 'work'] or any(x in ('', '.', '..') for x in parts[2:]):\n"
    "        raise PermissionError(p)\n"
    "    fd = os.open('/work', os.O_RDONLY | os.O_DIRECTORY)\n"
    "    for part in parts[2:-1]:\n"
    "        nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)\n"
    "        os.close(fd)\n"
    "        fd = nxt\n"
    "    try:\n"
    "        f = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)\n"
    "    finally:\n"
    "        os.close(fd)\n"
    "    if not stat.S_ISREG(os.fstat(f).st_mode):\n"
    "        os.close(f)\n"
    "        raise PermissionError(p)\n"
    "    return f\n"
)
READ_PROGRAM = _SAFE_OPEN + (
    "import base64\n"
    "cap, budget, used = int(sys.argv[1]), int(sys.argv[2]), 0\n"
    "for p in sys.argv[3:]:\n"
    "    try:\n"
    "        with os.fdopen(safe_open(p), 'rb') as f:\n"
    "            data = f.read(cap + 1)\n"
    "    except FileNotFoundError:\n"
    "        print(p, '!missing')\n"
    "        continue\n"
    "    except OSError:\n"
    "        print(p, '!special')\n"
    "        continue\n"
    "    encoded = base64.b64encode(data[:cap]).decode()\n"
    "    if len(data) > cap:\n"
    "        print(p, '!large')\n"
    "        continue\n"
    "    if used + len(encoded) + len(p) + 2 > budget:\n"
    "        print(p, '!later')\n"
    "        continue\n"
    "    used += len(encoded) + len(p) + 2\n"
    "    print(p, encoded)\n"
)
ARTIFACT_CAP = 256 * 1024
WHEELHOUSE = "/opt/wheelhouse"
INSTALL_TIMEOUT_S = 120
MISSING, SPECIAL = "missing", "not a regular file (a link, a folder or a device)"


def artifact_cap(output_bytes: int) -> int:
    """The largest artifact the grader reads back: 256 KiB, or less when the lab's output limit is smaller (the
    bytes travel base64-encoded on the reading program's output)."""
    return max(1024, min(ARTIFACT_CAP, (output_bytes - 1024) * 3 // 4))


def read_files(sandbox: Any, paths: list[str], *, timeout_s: float = 10) -> dict[str, bytes | str]:
    """Files' bytes read by a grader-side program, or why they cannot be: MISSING, SPECIAL, or "too large ...".
    Never trusts a cut-off line: anything that does not decode counts as too large."""
    cap = artifact_cap(sandbox.limits.output_bytes)
    budget = max(0, sandbox.limits.output_bytes - 1024)
    result = sandbox.exec(
        ["python3", "-I", "-c", READ_PROGRAM, str(cap), str(budget), *paths], user="grader", timeout_s=timeout_s
    )
    large = f"too large to read back (the limit is {cap // 1024} KiB per file)"
    found: dict[str, bytes | str] = dict.fromkeys(paths, large if result.output_truncated else MISSING)
    later = []
    for line in result.stdout.decode("ascii", "replace").splitlines():
        path, _, payload = line.partition(" ")
        if path not in found:
            continue
        if payload == "!later" and len(paths) > 1:
            later.append(path)  # fits on its own, not together with the others: read it alone
        elif payload in ("!missing", ""):
            found[path] = MISSING if payload else b""
        elif payload == "!special":
            found[path] = SPECIAL
        elif payload in ("!large", "!later"):
            found[path] = large
        else:
            try:
                found[path] = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                found[path] = large
    for path in later:
        found[path] = read_files(sandbox, [path], timeout_s=timeout_s)[path]
    return found


SAFE_TAIL_PROGRAM = _SAFE_OPEN + (
    "limit = int(sys.argv[2])\n"
    "fd = safe_open(sys.argv[1])\n"
    "os.lseek(fd, max(0, os.fstat(fd).st_size - limit), 0)\n"
    "sys.stdout.buffer.write(os.read(fd, limit))\n"
)


def read_learner_file(sandbox: Any, path: str, *, limit: int, timeout_s: float = 10) -> bytes:
    """The last `limit` bytes of a file the learner's code wrote in /work, read by the grader user.

    Symlinks and anything outside /work read as empty: the grader can read /grader, the learner must not be
    able to borrow that through a link where a log file should be.
    """
    result = sandbox.exec(
        ["python3", "-I", "-c", SAFE_TAIL_PROGRAM, path, str(limit)], user="grader", timeout_s=timeout_s
    )
    return result.stdout if result.exit_code == 0 else b""


def _submission_bytes(ctx: GradingContext, name: str) -> bytes | None:
    path = ctx.submission_dir / name
    try:
        return path.read_bytes() if path.is_file() and not path.is_symlink() else None
    except OSError:
        return None


def _require_str(args: dict[str, Any], key: str, problems: list[str], what: str) -> None:
    if key in args and not (isinstance(args[key], str) and args[key]):
        problems.append(f"args.{key} must be a non-empty string: {what}")


def _out_dir() -> str:
    """A fresh output folder per check run: train.py cannot tell which check runs it from the path."""
    return f"/work/.out-{secrets.token_hex(6)}"


def _train_argv(args: dict[str, Any], seed: int, out: str) -> list[str]:
    return [*args.get("command", ["python", "train.py"]), "--seed", str(seed), "--out", out]


# --- check kinds -----------------------------------------------------------------------------------------------


class SubmissionFileCheck(Check):
    """A check of one file of the submission, named by an argument; a missing file fails the check."""

    default_category = "reproducibility"
    expected_s = 0.1  # reads one file on the host
    file_arg: ClassVar[str]
    default_file: ClassVar[str]
    file_what: ClassVar[str]  # for the args problem: what the argument names

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        _require_str(args, cls.file_arg, problems, cls.file_what)
        return problems

    def run(self, ctx: GradingContext) -> CheckOutcome:
        name = self.args.get(self.file_arg, self.default_file)
        data = _submission_bytes(ctx, name)
        if data is None:
            return self.missing(name)
        return self.check_file(ctx, name, data.decode("utf-8", "replace"))

    def missing(self, name: str) -> CheckOutcome:
        raise NotImplementedError

    def check_file(self, ctx: GradingContext, name: str, text: str) -> CheckOutcome:
        raise NotImplementedError


@register
class PinnedDependencies(SubmissionFileCheck):
    kind = "repro.pinned_dependencies"
    file_arg, default_file, file_what = "lock_file", "requirements.lock", "the lock file's path in the submission"

    def missing(self, name: str) -> CheckOutcome:
        return self.failed(f"{name} is missing; expected a lock file pinning every dependency.", hint=f"Add {name}.")

    def check_file(self, ctx: GradingContext, name: str, text: str) -> CheckOutcome:
        loose = loose_requirements(text)
        if not loose:
            return self.passed(f"every requirement in {name} is pinned with ==")
        listed = "; ".join(f"line {e.line}: {e.text}" for e in loose[:10])
        return self.failed(
            f"{len(loose)} requirement(s) in {name} are not pinned to one version: {listed}. "
            "Expected every line to read name==version (hashes allowed).",
            hint="Pin exact versions, e.g. prometheus-client==0.26.0, as `pip freeze` prints them.",
            loose=[{"line": e.line, "text": e.text} for e in loose[:50]],
        )


@register
class OfflineInstall(SubmissionFileCheck):
    kind = "repro.offline_install"
    # Independent (it installs in a grader sandbox of its own, and nothing reads what it installed), but a sandbox
    # of its own from the schedule would go unused: it stays in the in-order chain, whose thread runs beside the
    # concurrent checks anyway.
    runs_alone = False
    expected_s = 2.5
    file_arg, default_file, file_what = "lock_file", "requirements.lock", "the lock file's path in the submission"

    def missing(self, name: str) -> CheckOutcome:
        return self.failed(f"{name} is missing, so there is nothing to install.", hint=f"Add {name}.")

    def check_file(self, ctx: GradingContext, name: str, text: str) -> CheckOutcome:
        elsewhere = off_wheelhouse_lines(text)
        if elsewhere:
            listed = "; ".join(f"line {e.line}: {e.text}" for e in elsewhere[:10])
            return self.failed(
                f"{name} installs from somewhere other than the platform's wheelhouse: {listed}. Expected only "
                "requirement lines (name==version), which pip resolves from the wheelhouse.",
                hint="Remove options (-e, -r, --find-links, --index-url), URLs and local paths from the lock file.",
            )
        # --target: a clean install location, so packages already in the image's venv do not count.
        # -I and --isolated: the submission's files (a pip/ folder, a pip.conf, .pth files in a user site) in
        # the working directory or $HOME cannot stand in for pip; --only-binary: no setup.py runs.
        argv = [
            "python",
            "-I",
            "-m",
            "pip",
            "--isolated",
            "install",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--no-index",
            "--find-links",
            WHEELHOUSE,
            "--target",
            "/work/.offline-install",
            "-r",
            f"/submission/{name}",
        ]
        # A sandbox of the grader's own with room to unpack the wheels (numpy is ~60 MB installed): the lab's
        # limits are the learner's code's, not pip's. pip stages in TMPDIR, so that is the same roomy scratch.
        # No learner code runs here: pip reads the lock and installs wheels only.
        with ctx.grader_sandbox(copy_submission=False) as box:
            result = box.exec(
                argv,
                user="learner",
                timeout_s=ctx.timeout_s(INSTALL_TIMEOUT_S),
                workdir="/",
                env={"PIP_CONFIG_FILE": "/dev/null", "TMPDIR": "/work"},
            )
            room = box.limits.scratch_mb
        stderr = result.stderr.decode("utf-8", "replace")
        if result.ok:
            return self.passed(f"{name} installs offline from the platform's wheelhouse in a fresh sandbox")
        if result.timed_out or result.oom_killed or result.exit_code is None:
            stopped = "ran out of memory" if result.oom_killed else f"did not finish within {result.duration_s:.0f} s"
            logger.warning("offline install of %s %s: %r", name, stopped, stderr[-1500:])
            return self.undecided(f"the offline install of {name} {stopped} (a problem on our side)")
        whose, found = pip_failure(stderr)
        if whose == "ours":
            logger.warning("offline install of %s failed on our side (%s MB scratch): %r", name, room, stderr[-1500:])
            return self.undecided(f"the offline install of {name} failed on our side: {found[0]}")
        return self.failed(
            f"pip install --no-index -r {name} failed in a fresh sandbox: "
            + "; ".join(found[:10])
            + ". Expected every pinned package to be available offline.",
            hint="Pin only packages and versions the platform's wheelhouse offers (listed in the lab instructions).",
            log=ctx.evidence_text(stderr[-3000:]),
        )


class _TrainCheck(Check):
    default_category = "reproducibility"
    # Every run writes to a fresh output folder of its own (_out_dir) and reads only the submission's files.
    runs_alone = True

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        command = args.get("command", ["python", "train.py"])
        if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
            problems.append("args.command must be a list of strings, e.g. [python, train.py]")
        artifacts = args.get("artifacts", ["model.json"])
        if not (isinstance(artifacts, list) and artifacts and all(isinstance(a, str) for a in artifacts)):
            problems.append("args.artifacts must be a list of file names written beside --out, e.g. [model.json]")
        for key in ("seed", "other_seed"):
            if key in args and (not isinstance(args[key], int) or isinstance(args[key], bool)):
                problems.append(f"args.{key} must be an integer")
        timeout = args.get("timeout_s", 30)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            problems.append("args.timeout_s must be a positive number of seconds")
        ignored = args.get("ignore_keys", ["seed"])
        if not (isinstance(ignored, list) and all(isinstance(k, str) for k in ignored)):
            problems.append("args.ignore_keys must be a list of JSON keys, e.g. [seed]")
        return problems

    def train(
        self, ctx: GradingContext, box: Any, seed: int, out_dir: str, artifacts: list[str] | None = None
    ) -> tuple[Any, dict[str, bytes | str]]:
        """Run the training command as the learner; the artifacts as a grader-side program read them (bytes, or
        why a file cannot be read: see read_files)."""
        artifacts = artifacts or self.args.get("artifacts", ["model.json"])
        out_name = artifacts[0]
        box.exec(["rm", "-rf", out_dir], user="learner", timeout_s=10)
        noted = len(box.limit_events)
        result = box.exec(
            _train_argv(self.args, seed, f"{out_dir}/{out_name}"),
            user="learner",
            timeout_s=ctx.timeout_s(float(self.args.get("timeout_s", 30))),
        )
        # Limits this run hit (a refused fork, a full scratch space, a crash), for the verdict to name.
        self.limits_hit = [e.message for e in box.limit_events[noted:] if e.reason in ("pids", "disk", "crash")]
        paths = [f"{out_dir}/{a}" for a in artifacts]
        files = read_files(box, paths) if result.exit_code == 0 else {}
        return result, {PurePosixPath(p).name: v for p, v in files.items()}

    def crashed(self, ctx: GradingContext, result: Any, seed: int) -> CheckOutcome:
        argv = " ".join(_train_argv(self.args, seed, "OUT"))
        if result.oom_killed:
            return self.failed(
                f"`{argv}` was stopped: it used more than the memory limit of {ctx.limits.memory_mb} MB.",
                hint="Generate and fit the data in smaller pieces, or use less of it.",
            )
        if result.timed_out:
            return self.failed(
                f"`{argv}` did not finish within {result.duration_s:.0f} s.",
                hint="Make it finish well within the time the instructions give.",
            )
        hit = getattr(self, "limits_hit", [])
        because = f" ({'; '.join(hit)})" if hit else ""
        return self.failed(
            f"`{argv}` exited with code {result.exit_code}{because}; expected 0.",
            hint="Run it locally with the same arguments and fix the error shown below.",
            stderr=ctx.evidence_text(result.stderr[-3000:]),
        )

    def missing(self, ctx: GradingContext, files: dict[str, bytes | str], seed: int) -> CheckOutcome | None:
        problems = {name: data for name, data in files.items() if isinstance(data, str)}
        if not problems:
            return None
        absent = [name for name, why in problems.items() if why == MISSING]
        others = [f"{name} is {why}" for name, why in problems.items() if why != MISSING]
        listed = ([f"missing beside --out: {', '.join(absent)}"] if absent else []) + others
        return self.failed(
            f"after a run with --seed {seed}, " + "; ".join(listed) + ".",
            hint="Write the model to the --out path and the other files into the same folder, as regular files "
            f"of at most {artifact_cap(ctx.limits.output_bytes) // 1024} KiB each.",
        )


@register
class DeterministicOutput(_TrainCheck):
    kind = "repro.deterministic_output"
    expected_s = 2.5  # three runs, one in a fresh sandbox

    def run(self, ctx: GradingContext) -> CheckOutcome:
        seed = int(self.args.get("seed", 42))
        out_dir = _out_dir()
        runs: list[tuple[str, dict[str, Any]]] = []
        for label in ("first run", "second run"):
            result, files = self.train(ctx, ctx.sandbox, seed, out_dir)
            if result.exit_code != 0:
                return self.crashed(ctx, result, seed)
            if problem := self.missing(ctx, files, seed):
                return problem
            runs.append((label, files))
        with ctx.fresh_sandbox() as box:
            result, files = self.train(ctx, box, seed, out_dir)
        if result.exit_code != 0:
            return self.crashed(ctx, result, seed)
        if problem := self.missing(ctx, files, seed):
            return problem
        runs.append(("run in a fresh sandbox", files))
        base_label, base = runs[0]
        for label, files in runs[1:]:
            for name, data in files.items():
                diff = first_difference(base[name] or b"", data or b"")
                if diff:
                    return self.failed(
                        f"{name} differs between the {base_label} and the {label} with the same --seed {seed}: "
                        f"first difference at byte {diff['byte']} (line {diff['line']}): "
                        f"{diff['first']!r} vs {diff['second']!r}. Expected byte-identical files.",
                        hint="Derive every random number from the seed (a private random.Random(seed)), sort keys "
                        "when writing JSON, and leave out timestamps, paths and anything else that changes.",
                        difference=diff,
                    )
        digests = {name: hashlib.sha256(data or b"").hexdigest()[:16] for name, data in base.items()}
        return self.passed(f"three runs with --seed {seed} wrote byte-identical files {digests}", sha256=digests)


@register
class SeedSensitivity(_TrainCheck):
    kind = "repro.seed_sensitivity"

    def run(self, ctx: GradingContext) -> CheckOutcome:
        seeds = int(self.args.get("seed", 42)), int(self.args.get("other_seed", 7))
        outputs = []
        for seed in seeds:
            result, files = self.train(ctx, ctx.sandbox, seed, _out_dir())
            if result.exit_code != 0:
                return self.crashed(ctx, result, seed)
            if problem := self.missing(ctx, files, seed):
                return problem
            outputs.append(files[self.args.get("artifacts", ["model.json"])[0]])
        name = self.args.get("artifacts", ["model.json"])[0]
        ignored = set(self.args.get("ignore_keys", ["seed"]))
        if without_keys(outputs[0], ignored) == without_keys(outputs[1], ignored):
            return self.failed(
                f"{name} is the same for --seed {seeds[0]} and --seed {seeds[1]} (ignoring the keys "
                f"{sorted(ignored)}); expected a different seed to give different synthetic data and so a "
                "different model.",
                hint="Generate the data from the seed you are given (random.Random(args.seed)), not a constant.",
                sha256=hashlib.sha256(outputs[0] or b"").hexdigest(),
            )
        return self.passed(f"--seed {seeds[0]} and --seed {seeds[1]} give different {name} files")


@register
class TruthfulManifest(_TrainCheck):
    kind = "repro.truthful_manifest"

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        problems = super().validate_args(args)
        _require_str(args, "manifest", problems, "the manifest's file name beside --out, e.g. run_manifest.json")
        _require_str(args, "code_file", problems, "the file whose sha256 the manifest records, e.g. train.py")
        return problems

    def run(self, ctx: GradingContext) -> CheckOutcome:
        seed = int(self.args.get("seed", 1234))
        manifest_name = self.args.get("manifest", "run_manifest.json")
        code_file = self.args.get("code_file", "train.py")
        lock_file = self.args.get("lock_file", "requirements.lock")
        artifacts = [self.args.get("artifacts", ["model.json"])[0], manifest_name]
        result, files = self.train(ctx, ctx.sandbox, seed, _out_dir(), artifacts)
        if result.exit_code != 0:
            return self.crashed(ctx, result, seed)
        if problem := self.missing(ctx, files, seed):
            return problem
        try:
            manifest = json.loads(files[manifest_name])
        except (ValueError, RecursionError) as exc:
            return self.failed(
                f"{manifest_name} is not valid JSON ({str(exc)[:200]}).", hint="Write it with json.dump."
            )
        code = _submission_bytes(ctx, code_file) or b""
        lock = (_submission_bytes(ctx, lock_file) or b"").decode("utf-8", "replace")
        locked = [e.name for e in parse_lock(lock) if e.name]
        claimed = manifest.get("packages") if isinstance(manifest, dict) else None
        wanted = sorted(
            {*locked, *(normalise_name(str(k))[:100] for k in list(claimed)[:500])}
            if isinstance(claimed, dict)
            else set(locked)
        )
        facts = self.sandbox_facts(ctx, wanted)
        if facts is None:
            return self.undecided("could not read the sandbox's Python and package versions (a problem on our side)")
        problems = manifest_problems(
            manifest,
            seed=seed,
            python_version=facts["python"],
            installed=facts["packages"],
            locked=locked,
            code_sha256=hashlib.sha256(code).hexdigest(),
            code_file=code_file,
        )
        if problems:
            return self.failed(
                f"{manifest_name} does not match the run: " + "; ".join(problems[:8]) + ".",
                hint="Record the values from the running process (platform.python_version(), "
                "importlib.metadata.version(name), hashlib.sha256 of the file's bytes), never typed-in ones.",
                problems=problems[:50],
            )
        return self.passed(f"{manifest_name} matches the seed, Python {facts['python']}, packages and code hash")

    def sandbox_facts(self, ctx: GradingContext, wanted: list[str]) -> dict[str, Any] | None:
        """Python's version and the versions of `wanted` packages as the learner's `python <script>` sees them."""
        command = self.args.get("command", ["python", "train.py"])
        script = next((c for c in command[1:] if c.endswith(".py")), None)
        first = str(PurePosixPath("/work", script).parent) if script else "/work"
        env = ctx.sandbox.exec(
            ["python3", "-I", "-c", INSTALLED_PROGRAM, first],
            user="learner",
            timeout_s=30,
            stdin=json.dumps(wanted).encode(),
        )
        try:
            facts = json.loads(env.stdout)
        except (ValueError, RecursionError):
            facts = None
        if not (isinstance(facts, dict) and isinstance(facts.get("packages"), dict) and facts.get("python")):
            logger.warning("reading the sandbox's packages failed (exit %s): %r", env.exit_code, env.stderr[-500:])
            return None
        return facts


@register
class DockerfileHygiene(SubmissionFileCheck):
    kind = "repro.dockerfile"
    file_arg, default_file, file_what = "path", "Dockerfile", "the Dockerfile's path in the submission"

    def missing(self, name: str) -> CheckOutcome:
        return self.failed(f"{name} is missing.", hint=f"Add a {name} next to service.py.")

    def check_file(self, ctx: GradingContext, name: str, text: str) -> CheckOutcome:
        problems = dockerfile_problems(text)
        if not problems:
            return self.passed(f"{name} follows every hygiene rule")
        listed = "; ".join((f"line {p.line}: " if p.line else "") + p.message for p in problems)
        return self.failed(
            f"{name} breaks {len(problems)} rule(s): {listed}.",
            hint="Pin the base as name:tag@sha256:digest, install the lock before copying code, use "
            "--no-cache-dir, add a non-root USER and a HEALTHCHECK, and pass secrets at run time.",
            problems=[{"line": p.line, "rule": p.rule, "message": p.message} for p in problems],
        )
