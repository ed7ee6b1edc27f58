"""Reproducibility check kinds: pinned locks, offline installs, deterministic artifacts, truthful manifests,
Dockerfile hygiene.

Judgement is pure functions over text and bytes (unit-tested without Docker); the check classes only gather
evidence. Evidence about the environment comes from trusted sources: files read on the host from the stored
submission, and programs run as the grader user (`python -I`) in the sandbox.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, ClassVar

from labs.checks.base import Check, CheckOutcome, GradingContext, register

# --- lock files ------------------------------------------------------------------------------------------------

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_PINNED = re.compile(rf"^(?P<name>{_NAME})(?:\[[^\]]*\])?\s*==\s*(?P<version>[A-Za-z0-9.!+_-]+)\s*(?:;.*)?$")
_NAME_ONLY = re.compile(rf"^(?P<name>{_NAME})")


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
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
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
    return problems


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


# --- manifests -------------------------------------------------------------------------------------------------


def manifest_problems(
    manifest: Any,
    *,
    seed: int,
    python_version: str,
    installed: dict[str, str],
    locked: list[str],
    code_sha256: str,
) -> list[str]:
    """Ways the manifest disagrees with what the sandbox had and what the code was.

    installed: normalised name -> version actually importable in the sandbox (grader-side metadata).
    locked: normalised names in the lock file; those installed must appear in the manifest.
    """
    if not isinstance(manifest, dict):
        return ["run_manifest.json is not a JSON object"]
    problems = []
    if manifest.get("seed") != seed:
        problems.append(f"seed is {manifest.get('seed')!r}, but the run used --seed {seed}")
    claimed_python = str(manifest.get("python", ""))
    if not claimed_python.split() or claimed_python.split()[0] != python_version:
        problems.append(f"python is {claimed_python!r}, but the sandbox runs Python {python_version}")
    packages = manifest.get("packages")
    if not isinstance(packages, dict):
        problems.append("packages must be an object mapping package names to versions")
        packages = {}
    claimed = {normalise_name(str(k)): str(v) for k, v in packages.items()}
    for name, version in sorted(claimed.items()):
        actual = installed.get(name)
        if actual is None:
            problems.append(f"packages lists {name} {version}, which is not installed in the sandbox")
        elif actual != version:
            problems.append(f"packages says {name} {version}, but {name} {actual} is installed")
    for name in locked:
        if name in installed and name not in claimed:
            problems.append(f"packages leaves out {name} {installed[name]}, which the lock file requires")
    if manifest.get("code_sha256") != code_sha256:
        problems.append(
            f"code_sha256 is {str(manifest.get('code_sha256'))[:16]!r}…, but train.py hashes to {code_sha256[:16]}…"
        )
    return problems


# --- Dockerfiles -----------------------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|credential)")
_SECRET_FILE = re.compile(r"(?i)(^|/)(\.env|\.netrc|\.pypirc|id_rsa|id_ed25519|.*\.pem|.*\.key|credentials.*)$")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_CODE_SOURCES = re.compile(r"(^\.$|^\./?$|\.py$|^\*$|^src/?|^app/?)")


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


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with the line each starts on; continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
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
        keyword, _, value = buffer.partition(" ")
        out.append(Instruction(start, keyword.upper(), value.strip()))
        buffer = ""
    if buffer:
        keyword, _, value = buffer.partition(" ")
        out.append(Instruction(start, keyword.upper(), value.strip()))
    return out


def _copy_sources(value: str) -> list[str]:
    if value.startswith("["):
        try:
            parts = json.loads(value)
        except ValueError:
            return []
    else:
        parts = [p for p in shlex.split(value, posix=True) if not p.startswith("--")]
    return [str(p) for p in parts[:-1]]


def _is_root(user: str) -> bool:
    """USER root, USER 0, USER 000:0, USER "root" ..."""
    name = user.strip().strip("\"'").split(":")[0].strip()
    return name == "root" or (name.isdigit() and int(name) == 0)


def dockerfile_problems(text: str) -> list[DockerProblem]:
    """Hygiene rules: pinned bases, non-root USER, HEALTHCHECK, deps before code, no secrets, no caches."""
    instructions = parse_dockerfile(text)
    problems: list[DockerProblem] = []
    if not any(i.keyword == "FROM" for i in instructions):
        return [DockerProblem(0, "base-image", "there is no FROM line: start from a pinned base image")]
    stages: set[str] = set()
    final_start = max(n for n, i in enumerate(instructions) if i.keyword == "FROM")
    for inst in instructions:
        if inst.keyword != "FROM":
            continue
        words = [w for w in inst.value.split() if not w.startswith("--")]
        image = words[0] if words else ""
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
    install = next((i for i in final if i.keyword == "RUN" and re.search(r"\bpip3? install\b", i.value)), None)
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
    pip_cache_off = False
    for inst in instructions:
        if inst.keyword == "FROM":
            pip_cache_off = False
        elif inst.keyword == "ENV" and re.search(r"PIP_NO_CACHE_DIR\s*[= ]\s*(1|true|yes|on|off)", inst.value, re.I):
            pip_cache_off = True
        if inst.keyword in ("ENV", "ARG"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=|\s|$)", inst.value)[:1] + re.findall(
                r"\s([A-Za-z_][A-Za-z0-9_]*)=", " " + inst.value
            ):
                if _SECRET_NAME.search(name):
                    problems.append(
                        DockerProblem(inst.line, "no-secrets", f"{inst.keyword} {name} bakes a secret into the image")
                    )
                    break
        if inst.keyword in ("COPY", "ADD"):
            for src in _copy_sources(inst.value):
                if _SECRET_FILE.search(src):
                    problems.append(DockerProblem(inst.line, "no-secrets", f"{src} looks like a secret file"))
        if inst.keyword == "RUN":
            if (
                re.search(r"\bpip3? install\b", inst.value)
                and "--no-cache-dir" not in inst.value
                and "type=cache" not in inst.value
                and not pip_cache_off
            ):
                problems.append(
                    DockerProblem(inst.line, "no-cache", "pip install keeps its download cache in the image")
                )
            if re.search(r"\bapt(-get)? install\b", inst.value) and "/var/lib/apt/lists" not in inst.value:
                problems.append(
                    DockerProblem(inst.line, "no-cache", "apt-get install leaves /var/lib/apt/lists in the layer")
                )
    return sorted(problems, key=lambda p: (p.line, p.rule))


# --- helpers shared by the classes -----------------------------------------------------------------------------

INSTALLED_PROGRAM = (
    "import importlib.metadata as m, json, platform, re\n"
    "print(json.dumps({'python': platform.python_version(), 'packages': {re.sub(r'[-_.]+', '-', "
    "d.metadata['Name']).lower(): d.version for d in m.distributions() if d.metadata['Name']}}))"
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
    "for p in sys.argv[1:]:\n"
    "    try:\n"
    "        with os.fdopen(safe_open(p), 'rb') as f:\n"
    "            data = f.read(%d)\n"
    "        print(p, base64.b64encode(data).decode())\n"
    "    except OSError as e:\n"
    "        print(p, '!' + type(e).__name__)\n"
)
ARTIFACT_CAP = 256 * 1024


def read_files(sandbox: Any, paths: list[str], *, timeout_s: float = 10) -> dict[str, bytes | None]:
    """Files' bytes read by a grader-side program (None when missing or unreadable)."""
    result = sandbox.exec(
        ["python3", "-I", "-c", READ_PROGRAM % ARTIFACT_CAP, *paths], user="grader", timeout_s=timeout_s
    )
    found: dict[str, bytes | None] = dict.fromkeys(paths)
    for line in result.stdout.decode("ascii", "replace").splitlines():
        path, _, payload = line.partition(" ")
        if path in found and payload and not payload.startswith("!"):
            found[path] = base64.b64decode(payload)
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
            "/opt/wheelhouse",
            "--target",
            "/work/.offline-install",
            "-r",
            f"/submission/{name}",
        ]
        with ctx.fresh_sandbox() as box:
            result = box.exec(
                argv, user="learner", timeout_s=ctx.timeout_s(90), workdir="/", env={"PIP_CONFIG_FILE": "/dev/null"}
            )
        stderr = result.stderr.decode("utf-8", "replace")
        if result.ok:
            return self.passed(f"{name} installs offline from the platform's wheelhouse in a fresh sandbox")
        if result.timed_out:
            return self.undecided(f"the offline install of {name} did not finish within {result.duration_s:.0f} s")
        found = pip_install_problems(stderr)
        return self.failed(
            f"pip install --no-index -r {name} failed in a fresh sandbox: "
            + ("; ".join(found) if found else "see the log")
            + ". Expected every pinned package to be available offline.",
            hint="Pin only packages and versions the platform's wheelhouse offers (listed in the lab instructions).",
            log=ctx.evidence_text(stderr[-3000:]),
        )


class _TrainCheck(Check):
    default_category = "reproducibility"

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
            if key in args and not isinstance(args[key], int):
                problems.append(f"args.{key} must be an integer")
        return problems

    def train(
        self, ctx: GradingContext, box: Any, seed: int, out_dir: str, artifacts: list[str] | None = None
    ) -> tuple[Any, dict[str, bytes | None]]:
        """Run the training command as the learner; the artifacts as a grader-side program read them."""
        artifacts = artifacts or self.args.get("artifacts", ["model.json"])
        out_name = artifacts[0]
        box.exec(["rm", "-rf", out_dir], user="learner", timeout_s=10)
        result = box.exec(
            _train_argv(self.args, seed, f"{out_dir}/{out_name}"),
            user="learner",
            timeout_s=ctx.timeout_s(float(self.args.get("timeout_s", 30))),
        )
        paths = [f"{out_dir}/{a}" for a in artifacts]
        files = read_files(box, paths) if result.exit_code == 0 else {}
        return result, {PurePosixPath(p).name: v for p, v in files.items()}

    def crashed(self, ctx: GradingContext, result: Any, seed: int) -> CheckOutcome:
        argv = " ".join(_train_argv(self.args, seed, "OUT"))
        if result.timed_out:
            return self.failed(f"`{argv}` did not finish within {result.duration_s:.0f} s.", hint="Make it finish.")
        return self.failed(
            f"`{argv}` exited with code {result.exit_code}; expected 0.",
            hint="Run it locally with the same arguments and fix the error shown below.",
            stderr=ctx.evidence_text(result.stderr[-3000:]),
        )

    def missing(self, files: dict[str, bytes | None], seed: int) -> CheckOutcome | None:
        absent = [name for name, data in files.items() if data is None]
        if not absent:
            return None
        return self.failed(
            f"after a run with --seed {seed} these files were missing beside --out: {', '.join(absent)}.",
            hint="Write the model to the --out path and the other files into the same folder.",
        )


@register
class DeterministicOutput(_TrainCheck):
    kind = "repro.deterministic_output"

    def run(self, ctx: GradingContext) -> CheckOutcome:
        seed = int(self.args.get("seed", 42))
        out_dir = _out_dir()
        runs: list[tuple[str, dict[str, bytes | None]]] = []
        for label in ("first run", "second run"):
            result, files = self.train(ctx, ctx.sandbox, seed, out_dir)
            if result.exit_code != 0:
                return self.crashed(ctx, result, seed)
            if problem := self.missing(files, seed):
                return problem
            runs.append((label, files))
        with ctx.fresh_sandbox() as box:
            result, files = self.train(ctx, box, seed, out_dir)
        if result.exit_code != 0:
            return self.crashed(ctx, result, seed)
        if problem := self.missing(files, seed):
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
            if problem := self.missing(files, seed):
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
        if problem := self.missing(files, seed):
            return problem
        env = ctx.sandbox.exec(["python3", "-I", "-c", INSTALLED_PROGRAM], user="grader", timeout_s=20)
        try:
            facts = json.loads(env.stdout)
        except ValueError:
            return self.undecided("could not read the sandbox's Python and package versions", stderr=env.stderr[-500:])
        code = _submission_bytes(ctx, code_file) or b""
        lock = (_submission_bytes(ctx, lock_file) or b"").decode("utf-8", "replace")
        try:
            manifest = json.loads(files[manifest_name] or b"")
        except (ValueError, RecursionError) as exc:
            return self.failed(f"{manifest_name} is not valid JSON ({exc}).", hint="Write it with json.dump.")
        problems = manifest_problems(
            manifest,
            seed=seed,
            python_version=facts["python"],
            installed=facts["packages"],
            locked=[e.name for e in parse_lock(lock) if e.name],
            code_sha256=hashlib.sha256(code).hexdigest(),
        )
        if problems:
            return self.failed(
                f"{manifest_name} does not match the run: " + "; ".join(problems[:8]) + ".",
                hint="Record the values from the running process (platform.python_version(), "
                "importlib.metadata.version(name), hashlib.sha256 of the file's bytes), never typed-in ones.",
                problems=problems,
            )
        return self.passed(f"{manifest_name} matches the seed, Python {facts['python']}, packages and code hash")


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
