"""The reproducibility kinds: the judges on recorded observations (lock parsing, Dockerfile rules, byte diffs,
manifests, whose pip failure it is, artifacts read back), and through the real sandbox: the quote-service example
solutions get full marks on every repro check, a lock pinning numpy installs offline."""

import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from labs.checks.repro import (
    dockerfile_problems,
    first_difference,
    loose_requirements,
    manifest_problems,
    parse_lock,
    pip_install_problems,
)

GOOD_DOCKERFILE = """\
FROM python:3.11.9-slim@sha256:{digest}
WORKDIR /app
COPY requirements.lock .
RUN pip install --no-cache-dir -r requirements.lock
COPY service.py train.py ./
USER app
HEALTHCHECK CMD python -c "print(1)"
CMD ["python", "service.py"]
""".replace("{digest}", "a" * 64)


def rules(text: str) -> set[tuple[int, str]]:
    return {(p.line, p.rule) for p in dockerfile_problems(text)}


def test_it_accepts_a_lock_with_exact_pins_hashes_and_markers():
    text = (
        "# comment\n"
        "prometheus-client==0.26.0 \\\n    --hash=sha256:abc \\\n    --hash=sha256:def\n"
        "numpy==2.4.6 ; python_version >= '3.11'\n\n"
    )
    assert loose_requirements(text) == []
    assert [(e.name, e.version, e.line) for e in parse_lock(text)] == [
        ("prometheus-client", "0.26.0", 2),
        ("numpy", "2.4.6", 5),
    ]


def test_it_lists_every_loose_requirement_with_its_line():
    text = "numpy==2.4.6\nprometheus_client>=0.20\npytest\n-e git+https://example.invalid/x.git\nrequests~=2.0\n"
    loose = loose_requirements(text)
    assert [(e.line, e.name) for e in loose] == [(2, "prometheus-client"), (3, "pytest"), (4, ""), (5, "requests")]


def test_it_accepts_the_reference_dockerfile():
    assert dockerfile_problems(GOOD_DOCKERFILE) == []


def test_it_flags_latest_and_missing_digest_on_the_from_line():
    text = GOOD_DOCKERFILE.replace(f"python:3.11.9-slim@sha256:{'a' * 64}", "python:latest")
    assert rules(text) == {(1, "no-latest"), (1, "base-digest")}


def test_it_flags_an_untagged_base_and_ignores_earlier_stage_names():
    text = f"FROM python AS build\nRUN true\nFROM build\n{GOOD_DOCKERFILE.split(chr(10), 1)[1]}"
    assert rules(text) == {(1, "base-tag"), (1, "base-digest")}


def test_it_requires_a_non_root_user_and_a_healthcheck():
    no_user = GOOD_DOCKERFILE.replace("USER app\n", "")
    root_user = GOOD_DOCKERFILE.replace("USER app", "USER root")
    no_check = GOOD_DOCKERFILE.replace('HEALTHCHECK CMD python -c "print(1)"\n', "")
    assert rules(no_user) == {(0, "non-root")}
    assert rules(root_user) == {(6, "non-root")}
    assert rules(no_check) == {(0, "healthcheck")}


def test_it_flags_code_copied_before_dependencies_are_installed():
    text = GOOD_DOCKERFILE.replace("COPY requirements.lock .\n", "COPY . .\n")
    assert rules(text) == {(3, "deps-before-code")}


def test_it_flags_secrets_in_env_arg_and_copied_files():
    text = GOOD_DOCKERFILE.replace(
        "WORKDIR /app\n", "WORKDIR /app\nENV API_KEY=abc123\nARG GITHUB_TOKEN\nCOPY .env /app/.env\n"
    )
    assert rules(text) == {(3, "no-secrets"), (4, "no-secrets"), (5, "no-secrets")}


def test_it_flags_pip_and_apt_caches_left_in_layers():
    text = GOOD_DOCKERFILE.replace("--no-cache-dir ", "").replace(
        "WORKDIR /app\n", "WORKDIR /app\nRUN apt-get update && \\\n    apt-get install -y curl\n"
    )
    assert rules(text) == {(3, "no-cache"), (6, "no-cache")}


def test_it_accepts_apt_lists_removed_in_the_same_run_and_pip_cache_disabled_by_env():
    text = GOOD_DOCKERFILE.replace("--no-cache-dir ", "").replace(
        "WORKDIR /app\n",
        "ENV PIP_NO_CACHE_DIR=1\nRUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*\n",
    )
    assert dockerfile_problems(text) == []


def test_it_shows_where_two_artifacts_first_differ():
    a = b'{\n  "seed": 1,\n  "slope": 2.5\n}\n'
    b = b'{\n  "seed": 1,\n  "slope": 2.7\n}\n'
    diff = first_difference(a, b)
    assert diff == {"byte": a.index(b"5"), "line": 3, "first": '  "slope": 2.5', "second": '  "slope": 2.7'}
    assert first_difference(a, a) is None
    assert first_difference(a, a + b"x")["byte"] == len(a)


def test_it_accepts_a_truthful_manifest():
    manifest = {"seed": 3, "python": "3.11.2", "packages": {"Prometheus_Client": "0.26.0"}, "code_sha256": "ab" * 32}
    problems = manifest_problems(
        manifest,
        seed=3,
        python_version="3.11.2",
        installed={"prometheus-client": "0.26.0", "numpy": "2.4.6"},
        locked=["prometheus-client"],
        code_sha256="ab" * 32,
    )
    assert problems == []


def test_it_names_every_lie_in_a_manifest():
    manifest = {"seed": 4, "python": "3.12.1", "packages": {"numpy": "1.0", "left-pad": "1"}, "code_sha256": "00"}
    problems = manifest_problems(
        manifest,
        seed=3,
        python_version="3.11.2",
        installed={"prometheus-client": "0.26.0", "numpy": "2.4.6"},
        locked=["prometheus-client"],
        code_sha256="ab" * 32,
    )
    text = " | ".join(problems)
    assert len(problems) == 6
    for fragment in ("--seed 3", "Python 3.11.2", "numpy 2.4.6 is installed", "left-pad", "leaves out prometheus"):
        assert fragment in text
    assert "code_sha256" in problems[-1]


def test_it_reads_missing_packages_from_pip_errors():
    stderr = (
        "ERROR: Could not find a version that satisfies the requirement prometheus-client==0.19.0 (from versions: "
        "0.26.0)\nERROR: No matching distribution found for prometheus-client==0.19.0\n"
    )
    assert pip_install_problems(stderr) == ["prometheus-client==0.19.0 is not in the platform's wheelhouse"]


def test_seed_sensitivity_ignores_the_seed_an_artifact_records_about_itself():
    from labs.checks.repro import without_keys

    a = b'{"seed": 1, "model": {"slope": 2.0, "seed": 1}}'
    b = b'{"seed": 2, "model": {"slope": 2.0, "seed": 2}}'
    c = b'{"seed": 2, "model": {"slope": 2.1}}'
    assert without_keys(a, {"seed"}) == without_keys(b, {"seed"})
    assert without_keys(a, {"seed"}) != without_keys(c, {"seed"})
    assert without_keys(b"not json", {"seed"}) == b"not json"


# --- lock files pip accepts -----------------------------------------------------------------------------------


def test_it_reads_a_lock_with_a_byte_order_mark_tab_comments_and_triple_equals():
    text = "\ufeffnumpy==2.4.6\t# via the trainer\nprometheus_client === 0.26.0\n"
    assert loose_requirements(text) == []
    assert [(e.name, e.version) for e in parse_lock(text)] == [("numpy", "2.4.6"), ("prometheus-client", "0.26.0")]


# --- manifests: the whole contract ------------------------------------------------------------------------------

INSTALLED = {"prometheus-client": "0.26.0", "numpy": "2.4.6"}


def manifest(**changes):
    base = {"seed": 3, "python": "3.11.2", "packages": {"prometheus-client": "0.26.0"}, "code_sha256": "ab" * 32}
    return {**base, **changes}


def problems_of(document, *, locked=("prometheus-client",), installed=None):
    return manifest_problems(
        document,
        seed=3,
        python_version="3.11.2",
        installed=INSTALLED if installed is None else installed,
        locked=list(locked),
        code_sha256="ab" * 32,
    )


@pytest.mark.parametrize(
    "document",
    [
        manifest(packages={"prometheus_client": "0.26.0"}),
        manifest(packages={"Prometheus_Client": "0.26"}),  # the name normalised, the version as PEP 440
        manifest(packages={"PROMETHEUS.CLIENT": "v0.26.0.0"}),
        manifest(packages={"prometheus-client": "0.26.0", "numpy": "2.4.6"}),  # more than the lock, all true
        manifest(python="3.11.2 (main, Mar 13 2023, 12:18:29) [GCC 12.2.0]"),  # sys.version
        manifest(python="Python 3.11.2"),
        manifest(seed="3"),
        manifest(code_sha256="AB" * 32),
        manifest(code_sha256="sha256:" + "ab" * 32),
    ],
)
def test_it_accepts_every_truthful_way_to_write_a_manifest(document):
    assert problems_of(document) == []


def test_it_accepts_an_empty_package_map_when_the_lock_pins_nothing():
    assert problems_of(manifest(packages={}), locked=()) == []


def test_it_accepts_a_locked_package_recorded_as_not_installed_when_it_is_not():
    assert problems_of(manifest(packages={"left-pad": None}), locked=("left-pad",)) == []
    assert problems_of(manifest(packages={"numpy": None}), locked=())  # installed: that is a lie


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (manifest(packages={"prometheus-client": "0.26.1"}), "prometheus-client 0.26.0 is installed"),
        (manifest(packages={}), "leaves out prometheus-client"),
        (manifest(packages={"prometheus-client": ["0.26.0"]}), "not a string"),
        (manifest(packages=None), "packages must be an object"),
        (manifest(python="3.11"), "Python 3.11.2"),
        (manifest(python=[3, 11, 2]), "Python 3.11.2"),
        (manifest(seed=True), "--seed 3"),
        (manifest(seed=4), "--seed 3"),
        (manifest(code_sha256="ab" * 31), "code_sha256"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_it_rejects_a_manifest_that_does_not_match_the_run(document, fragment):
    assert fragment in " | ".join(problems_of(document))


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("0.26", "0.26.0", True),
        ("1.0RC1", "1.0rc1", True),
        ("1.0-1", "1.0.post1", True),
        ("2!1.0", "1.0", False),
        ("1.0+local.1", "1.0+LOCAL-1", True),
        ("1.0.dev0", "1.0", False),
        ("not-a-version", "NOT-A-VERSION", True),
        ("0.26", "0.27", False),
    ],
)
def test_it_compares_versions_as_pep_440_versions(a, b, same):
    from labs.checks.repro import same_version

    assert same_version(a, b) is same


# --- offline installs: whose failure is it --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stderr", "whose", "fragment"),
    [
        ("ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device\n", "ours", "space"),
        ("ERROR: Exception:\nTraceback (most recent call last):\n  File ...\nKeyError: 'x'\n", "ours", "crashed"),
        ("ERROR: Could not install packages due to an OSError: [Errno 13] Permission denied\n", "ours", "pip"),
        ("", "ours", "pip failed"),
        ("ERROR: No matching distribution found for numpy==1.26.4\n", "lock", "numpy==1.26.4 is not in"),
        ("ERROR: Cannot install a==1 and b==2 because these package versions have conflicting deps\n", "lock", "a==1"),
        (
            "ERROR: Invalid requirement: 'numpy=2.4.6' (from line 1 of /submission/requirements.lock)\n",
            "lock",
            "Invalid",
        ),
        ("ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.\n", "lock", "--hash"),
    ],
)
def test_it_tells_our_install_failures_from_the_locks(stderr, whose, fragment):
    from labs.checks.repro import pip_failure

    found_whose, found = pip_failure(stderr)
    assert found_whose == whose
    assert fragment in " ".join(found)


class FakeBox:
    def __init__(self, result, output_bytes=1 << 20):
        self.result = result
        self.limits = SimpleNamespace(output_bytes=output_bytes, scratch_mb=1024)
        self.limit_events = []
        self.calls = []

    def exec(self, argv, **kwargs):
        self.calls.append((argv, kwargs))
        return self.result

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def offline_ctx(tmp_path, result):
    (tmp_path / "requirements.lock").write_text("numpy==2.4.6\n")
    box = FakeBox(result)
    ctx = SimpleNamespace(
        submission_dir=tmp_path,
        grader_sandbox=lambda copy_submission=True: box,
        timeout_s=lambda wanted: wanted,
        evidence_text=lambda data, limit=4000: str(data)[:limit],
    )
    return ctx, box


def exec_result(code=1, stderr=b"", timed_out=False, oom=False):
    from labs.sandbox import ExecResult

    return ExecResult(code, b"", stderr, timed_out, 1.0, False, oom)


def test_it_installs_the_lock_in_the_graders_own_roomy_sandbox_with_pips_temporary_files_there(tmp_path):
    from labs.checks.repro import OfflineInstall

    ctx, box = offline_ctx(tmp_path, exec_result(0))
    outcome = OfflineInstall(check_id="o", args={}, points=5).run(ctx)
    assert outcome.status == "pass"
    argv, kwargs = box.calls[0]
    assert kwargs["env"]["TMPDIR"].startswith("/work") and "/work/.offline-install" in argv
    assert kwargs["user"] == "learner"  # pip reads the learner's lock; it never runs as the grader


@pytest.mark.parametrize(
    ("result", "status"),
    [
        (exec_result(1, b"ERROR: Could not install packages due to an OSError: [Errno 28] No space left"), "error"),
        (exec_result(124, timed_out=True), "error"),
        (exec_result(137, oom=True), "error"),
        (exec_result(1, b"ERROR: No matching distribution found for numpy==2.4.6"), "fail"),
    ],
)
def test_it_keeps_out_of_space_and_timeouts_of_the_install_as_ours(tmp_path, result, status):
    from labs.checks.repro import OfflineInstall

    ctx, _ = offline_ctx(tmp_path, result)
    assert OfflineInstall(check_id="o", args={}, points=5).run(ctx).status == status


# --- artifacts the grader reads back ---------------------------------------------------------------------------


def test_it_treats_an_artifact_cut_off_by_the_output_limit_as_too_large_instead_of_crashing():
    from labs.checks.repro import MISSING, read_files

    cut = exec_result(0)
    cut.stdout = b"/work/o/model.json " + b"QUJD" * 100 + b"Q"  # a base64 line cut mid-quantum
    cut.output_truncated = True
    files = read_files(FakeBox(cut, output_bytes=8192), ["/work/o/model.json", "/work/o/run_manifest.json"])
    assert files["/work/o/model.json"].startswith("too large")
    assert files["/work/o/run_manifest.json"].startswith("too large")
    whole = exec_result(0)
    whole.stdout = b"/work/o/model.json QUJD\n/work/o/x !missing\n/work/o/y !special\n/work/o/e \n"
    files = read_files(FakeBox(whole), ["/work/o/model.json", "/work/o/x", "/work/o/y", "/work/o/e"])
    assert files == {
        "/work/o/model.json": b"ABC",
        "/work/o/x": MISSING,
        "/work/o/y": files["/work/o/y"],
        "/work/o/e": b"",
    }
    assert "not a regular file" in files["/work/o/y"]


# --- Dockerfiles: what Docker itself accepts --------------------------------------------------------------------


def test_it_reads_a_copy_line_with_an_unbalanced_quote_instead_of_crashing():
    text = GOOD_DOCKERFILE.replace("COPY service.py train.py ./", 'COPY "service.py train.py ./')
    assert rules(text) == set()
    text = GOOD_DOCKERFILE.replace("COPY service.py train.py ./", 'COPY ["service.py", "./"')
    assert rules(text) == set()


def test_it_accepts_heredocs_arg_defaults_inline_cache_settings_and_tabs():
    digest = "a" * 64
    text = (
        f"ARG BASE=python:3.11.9-slim@sha256:{digest}\n"
        "FROM ${BASE} AS build\n"
        "RUN pip install -r requirements.lock --target /deps\n"  # a build stage's cache is not in the image
        "FROM ${BASE}\n"
        "ENV TOKENIZERS_PARALLELISM=false PASSWORD_FILE=/run/secrets/db\n"
        "COPY requirements.lock .\n"
        "RUN\tPIP_NO_CACHE_DIR=1 pip install -r requirements.lock\n"
        "RUN <<EOF\n"
        "USER root\n"
        "echo building\n"
        "EOF\n"
        "COPY --from=build /deps /deps\n"
        "COPY service.py train.py ./\n"
        "USER app\n"
        "HEALTHCHECK CMD python -c 'print(1)'\n"
    )
    assert dockerfile_problems(text) == []


def test_it_still_flags_real_secrets_and_caches_in_the_final_stage():
    text = GOOD_DOCKERFILE.replace(
        "WORKDIR /app\n", "WORKDIR /app\nENV GITHUB_TOKEN=x AWS_SECRET_ACCESS_KEY=y\nARG DB_PASSWORD\n"
    ).replace("--no-cache-dir ", "")
    assert rules(text) == {(3, "no-secrets"), (4, "no-secrets"), (6, "no-cache")}


# --- through the real sandbox -----------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
QUOTE_LAB = ROOT / "courses/content/production-systems/week-05-containers/lab-quote-service"
QUOTE_EXAMPLES = sorted(p.name for p in (QUOTE_LAB / "examples").glob("*/") if (p / "train.py").is_file())
REPRO_CHECKS = {"pinned", "offline-install", "deterministic", "seed-sensitivity", "manifest", "dockerfile"}


def graded(lab: Path, submission: Path, only: set[str] | None = None) -> dict[str, dict]:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_flagship import grade, readable

    rows = grade(lab, readable(submission), only=only)
    return {row["id"]: row for row in rows if "status" in row}


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("example", QUOTE_EXAMPLES)
def test_it_gives_every_quote_service_example_full_marks_on_the_repro_checks(tmp_path, example):
    submission = tmp_path / "submission"
    shutil.copytree(QUOTE_LAB / "examples" / example, submission, ignore=shutil.ignore_patterns("*.md", ".*"))
    results = graded(QUOTE_LAB, submission, REPRO_CHECKS)
    assert {cid: (r["status"], r["message"]) for cid, r in results.items() if r["status"] != "pass"} == {}
    assert set(results) == REPRO_CHECKS


TRAIN_WITH_A_TRUTHFUL_MANIFEST = """
import argparse, hashlib, json, os, sys
from importlib import metadata
p = argparse.ArgumentParser(); p.add_argument('--seed', type=int); p.add_argument('--out')
a = p.parse_args()
os.makedirs(os.path.dirname(a.out), exist_ok=True)
json.dump({'seed': a.seed, 'w': a.seed % 7}, open(a.out, 'w'), sort_keys=True)
manifest = {
    'seed': str(a.seed),
    'python': sys.version,
    # the lock's spelling of the name and its shorter spelling of the version
    'packages': {'Prometheus_Client': '0.26', 'numpy': metadata.version('numpy')},
    'code_sha256': hashlib.sha256(open(__file__, 'rb').read()).hexdigest().upper(),
}
json.dump(manifest, open(os.path.join(os.path.dirname(a.out), 'run_manifest.json'), 'w'))
"""


@pytest.mark.docker
@pytest.mark.slow
def test_it_passes_a_numpy_lock_offline_and_a_manifest_written_in_other_spellings(tmp_path):
    lab = tmp_path / "lab"
    (lab / "grader").mkdir(parents=True)
    checks = [
        {"id": "offline", "kind": "repro.offline_install", "points": 5, "args": {}},
        {
            "id": "manifest",
            "kind": "repro.truthful_manifest",
            "points": 5,
            "args": {"manifest": "run_manifest.json", "code_file": "train.py"},
        },
    ]
    # The lab's own limits are small: the install gets room of its own all the same.
    spec = {"title": "t", "slug": "t", "limits": {"memory_mb": 256, "scratch_mb": 16}, "checks": checks}
    (lab / "lab.yaml").write_text(yaml.safe_dump(spec))
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / "requirements.lock").write_text("numpy==2.4.6\nPrometheus_Client==0.26\n")
    (submission / "train.py").write_text(TRAIN_WITH_A_TRUTHFUL_MANIFEST)
    results = graded(lab, submission)
    assert {cid: (r["status"], r["message"]) for cid, r in results.items()} == {
        "offline": ("pass", "requirements.lock installs offline from the platform's wheelhouse in a fresh sandbox"),
        "manifest": ("pass", "run_manifest.json matches the seed, Python 3.11.2, packages and code hash"),
    }
    # A version the wheelhouse lacks is the lock's fault, named.
    (submission / "requirements.lock").write_text("numpy==1.26.4\n")
    results = graded(lab, submission, {"offline"})
    assert results["offline"]["status"] == "fail" and "numpy==1.26.4 is not in" in results["offline"]["message"]


def test_it_reads_an_artifact_alone_when_it_does_not_fit_together_with_the_others():
    from labs.checks.repro import read_files

    together, alone = exec_result(0), exec_result(0)
    together.stdout = b"/work/o/a QUJD\n/work/o/b !later\n"
    alone.stdout = b"/work/o/b REVG\n"
    box = FakeBox(together, output_bytes=8192)
    replies = [together, alone]
    box.exec = lambda argv, **kwargs: replies.pop(0)
    assert read_files(box, ["/work/o/a", "/work/o/b"]) == {"/work/o/a": b"ABC", "/work/o/b": b"DEF"}
