"""`bench --help`, `bench VERB --help` and `bench --version`: every option says what it does
and shows its default; the suites are listed; help stays fast where it is fast today."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import VERBS, build_parser, main
from bench.host.envinfo import version_line
from bench.suites import policy as suites
from bench.suites.catalogue import SUITES

ROOT = Path(__file__).resolve().parent.parent


def _sub(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _shown_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text of one option as `--help` prints it (defaults expanded, not wrapped)."""
    return parser._get_formatter()._expand_help(action)


def _trivial(default: object) -> bool:
    return default is None or default is argparse.SUPPRESS or default in ("", [])


def _name(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or action.dest


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_option_has_help_and_shows_its_default(verb: str) -> None:
    """Walks the verb's parser as `bench VERB --help` builds it; a verb whose optional module
    is missing (a stub without options) is skipped."""
    parser = _sub(build_parser([verb])).choices[verb]
    if parser.get_default("func") is None:
        pytest.skip(f"{verb}: its optional dependency is not installed")
    assert parser.description, f"bench {verb} --help has no description"
    problems = []
    for action in _options(parser):
        shown = _shown_help(parser, action)
        if not shown.strip():
            problems.append(f"{_name(action)}: no help")
        elif action.nargs != 0 and not _trivial(action.default) and "default" not in shown:
            problems.append(f"{_name(action)}: default {action.default!r} not shown")
    assert not problems, f"bench {verb}: " + "; ".join(problems)
    assert "usage: bench " + verb in parser.format_help()  # every help string formats


def test_top_level_help_says_what_bench_does(capsys) -> None:
    parser = build_parser([])
    assert all(_shown_help(parser, a).strip() for a in _options(parser))
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for words in ("Benchmark training", "MNIST", "CIFAR-10", "CPUs and GPUs", "throughput",
                  "time to a target accuracy", "gate CI", "--version"):
        assert words in out
    for verb, (_, help_text) in VERBS.items():
        assert verb in out and " ".join(help_text.split()) in out


def test_version_names_bench_torch_and_cuda(capsys) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    assert re.match(r"bench \S+( \(commit [0-9a-f]{10}(-dirty)?\))?, torch \S+, ", out)
    assert not out.startswith("bench (not installed)")
    assert f"torch {torch.__version__}," in out
    if torch.version.cuda:
        assert out.endswith(f"CUDA {torch.version.cuda}")
    elif getattr(torch.version, "hip", None):
        assert out.endswith(f"ROCm {torch.version.hip}")
    else:
        assert out.endswith("no CUDA (CPU-only torch)")


def _pyproject_version() -> str:
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError("pyproject.toml has no version line")


def test_version_of_an_uninstalled_checkout_names_version_and_commit(monkeypatch) -> None:
    """No package metadata (a checkout run as `PYTHONPATH=. python -m bench`, the GPU box's
    twin): the version comes from pyproject.toml, the commit from git."""
    import importlib.metadata

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    line = version_line()
    assert line.startswith(f"bench {_pyproject_version()}")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, timeout=10) if shutil.which("git") else None
    if head is None or head.returncode != 0:
        pytest.skip("not a git checkout, or git is missing: the commit part is not shown")
    assert re.match(rf"bench \S+ \(commit {head.stdout.strip()[:10]}(-dirty)?\), torch ", line)


def test_version_without_git_omits_the_commit(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "")  # git cannot be found: the version alone, no error
    line = version_line()
    assert re.match(r"bench \S+, torch \S+, ", line) and "commit" not in line


def test_suite_help_lists_every_suite_with_a_description(capsys) -> None:
    assert main(["suite", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "vgg-ablation" in suites.suite_names()
    for name in suites.suite_names():
        (row,) = [line for line in lines if line.split()[:1] == [name] and line.startswith("  ")]
        assert len(row.split(maxsplit=1)) == 2, f"suite {name}: no description"
        assert row.split(maxsplit=1)[1] == SUITES[name]


@pytest.mark.parametrize("argv", [["--help"], ["suite", "--help"], ["env", "--help"],
                                  ["ci", "--help"]])
def test_help_starts_without_torch(argv: list[str]) -> None:
    """`python -X importtime -m bench ... --help` shows no torch import."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "bench", *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "bench.cli" in imported and "torch" not in imported
