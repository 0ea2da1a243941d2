"""The CI example (.github/workflows/gpu-bench.yml) is safe to copy onto a self-hosted runner.

Users copy this file as it is, onto a machine with a GPU: the points zizmor (the GitHub Actions
security linter) checks, and the fork gate it cannot, are asserted on the text here (no YAML
parser in the venv: the file's own simple layout is read with regexes). zizmor itself runs when
it is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "gpu-bench.yml"


def _text() -> str:
    return WORKFLOW.read_text()


def _lines() -> list[str]:
    """The file's lines without comments (a comment may quote what is refused)."""
    return [re.sub(r"(^|\s)#.*$", "", line).rstrip() for line in _text().splitlines()]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block(lines: list[str], start: int) -> list[str]:
    """The lines nested under lines[start] (deeper indentation, blank lines kept)."""
    base = _indent(lines[start])
    out = []
    for line in lines[start + 1:]:
        if line.strip() and _indent(line) <= base:
            break
        out.append(line)
    return out


def _jobs(lines: list[str]) -> dict[str, list[str]]:
    """Each job's lines, by job id."""
    top = next(i for i, line in enumerate(lines) if line == "jobs:")
    body = _block(lines, top)
    ids = [i for i, line in enumerate(body) if re.match(r"^  [\w-]+:$", line)]
    return {body[i].strip()[:-1]: _block(body, i) for i in ids}


def _run_scripts(lines: list[str]) -> list[str]:
    """The text of every `run:` script, one-line or block (`run: |`)."""
    scripts = []
    for i, line in enumerate(lines):
        m = re.match(r"^\s*(?:- )?run:\s*(.*)$", line)
        if m:
            inline = m.group(1)
            block = _block(lines, i) if inline in ("|", ">", "|-", ">-", "") else []
            scripts.append("\n".join([inline, *block]))
    return scripts


def _job_condition(body: list[str]) -> str:
    """The job's own `if:` (inline or a folded block), or ''."""
    for i, line in enumerate(body):
        m = re.match(r"^    if:\s*(.*)$", line)
        if m:
            return "\n".join([m.group(1), *_block(body, i)])
    return ""


def test_the_parser_finds_the_workflow_parts() -> None:
    """The checks below read what these helpers find: an empty find would pass them all."""
    lines = _lines()
    assert "bench" in _jobs(lines)
    assert len(_run_scripts(lines)) >= 3
    assert len(re.findall(r"uses:", "\n".join(lines))) >= 2
    assert "github.repository" in _job_condition(_jobs(lines)["bench"])


def test_every_action_is_pinned_to_a_commit_sha_with_its_version() -> None:
    uses = re.findall(r"^\s*(?:- )?uses:\s*(\S+)(.*)$", _text(), re.M)
    assert uses
    for ref, rest in uses:
        if ref.startswith("./"):  # a local action is this repository's own code
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{ref} is not pinned"
        assert re.search(r"#\s*v\d+(\.\d+)*", rest), f"{ref}: no version comment"


def test_the_token_can_only_read() -> None:
    lines = _lines()
    top = next((i for i, line in enumerate(lines) if line.startswith("permissions:")), None)
    assert top is not None, "no top-level permissions: the token gets the default, broad ones"
    assert [ln.strip() for ln in _block(lines, top) if ln.strip()] == ["contents: read"]
    for job, body in _jobs(lines).items():
        perms = [i for i, ln in enumerate(body) if ln.strip().startswith("permissions:")]
        for i in perms:  # a job may narrow, never widen
            granted = [ln.strip() for ln in _block(body, i) if ln.strip()]
            assert all(g.endswith(("read", "none")) for g in granted), (job, granted)
        assert "write-all" not in "\n".join(body) and "read-all" not in "\n".join(body)


def test_checkout_leaves_no_credentials() -> None:
    lines = _lines()
    steps = [i for i, ln in enumerate(lines) if re.search(r"uses:\s*actions/checkout@", ln)]
    assert steps
    for i in steps:
        nested = [ln.strip() for ln in _block(lines, i)]
        assert "persist-credentials: false" in nested, lines[i]


def test_no_pull_request_target_and_no_user_strings_in_scripts() -> None:
    lines = _lines()
    assert "pull_request_target" not in "\n".join(lines)
    assert "workflow_run" not in "\n".join(lines)
    for script in _run_scripts(lines):
        assert "${{" not in script, f"an expression inside a run: script: {script!r}"


def test_the_self_hosted_job_never_runs_a_forks_pull_request() -> None:
    """A pull request runs on the self-hosted runner only from this repository's branches and
    with the maintainer's label; push and manual runs are the maintainers' own."""
    for job, body in _jobs(_lines()).items():
        text = "\n".join(body)
        if "self-hosted" not in text:
            continue
        gate = re.sub(r"\s+", " ", _job_condition(body))
        has_env = re.search(r"^    environment:", text, re.M) is not None
        assert has_env or ("github.event.pull_request.head.repo.full_name == github.repository"
                           in gate and "contains(github.event.pull_request.labels.*.name, "
                           "'run-gpu-bench')" in gate), f"job {job} has no fork gate"
        assert "github.event_name != 'pull_request'" in gate or has_env


@pytest.mark.skipif(shutil.which("zizmor") is None,
                    reason="zizmor not installed (pip install zizmor); the tests above assert "
                           "its points")
def test_zizmor_finds_nothing() -> None:
    zizmor = shutil.which("zizmor")
    assert zizmor is not None
    proc = subprocess.run([zizmor, "--offline", "--min-severity", "medium", str(WORKFLOW.parent)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
