"""Pure logic of the reproducibility kinds: lock parsing, Dockerfile rules, byte diffs, manifests, pip errors."""

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
