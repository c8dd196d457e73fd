"""The docs site: built strictly, its references complete, its command lines valid.

The CLI reference is generated from the parser and the API reference from the docstrings; these
tests check that what they generate covers every command, option and public name, that the
results page names every JSON field, that a broken link fails the strict build, and that every
``python -m harness`` line in the docs parses with today's parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness import hookspecs
from harness.cli.main import build_parser
from harness.distributed.records import Record
from harness.results import compare
from harness.results.runs import load
from harness.validation.verdicts import Check

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def sphinx_build(source: Path, out: Path) -> subprocess.CompletedProcess:
    """``sphinx-build -W`` (warnings are errors), as ``tox run -e docs`` runs it."""
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(source), str(out)],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    for module in ("sphinx", "myst_parser", "sphinxarg"):
        pytest.importorskip(module, reason="the docs extra: pip install '.[docs]'")
    out = tmp_path_factory.mktemp("html")
    done = sphinx_build(DOCS, out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Each (sub)command's path and its option strings, depth first as the reference lists them."""
    options = [s for action in parser._actions for s in action.option_strings if s not in ("-h", "--help")]
    yield path, options
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def test_every_command_and_option_is_in_the_cli_reference(built):
    page = (built / "cli.html").read_text()
    found = list(commands(build_parser()))
    assert len(found) > 8  # list, validate, compare, scale, tolerances, gradbench and its four
    starts = []
    for path, _ in found:
        anchor = "-".join(("python-m-harness", *path))
        assert f'id="{anchor}"' in page, f"no section for {' '.join(path)}"
        starts.append(page.index(f'id="{anchor}"'))
    assert starts == sorted(starts)
    for (path, options), start, end in zip(found, starts, [*starts[1:], len(page)], strict=True):
        section = html.unescape(page[start:end])
        missing = [o for o in options if o not in section]
        assert not missing, f"{' '.join(path) or 'the top level'}: {missing} not in the reference"


def test_every_public_name_is_in_the_api_reference(built):
    page = (built / "api.html").read_text()
    names = [f"harness.{n}" for n in harness.__all__] + [f"harness.hookspecs.{n}" for n in hookspecs.__all__]
    names += [f"harness.problems.{n}" for n in ("ScalarProblem", "GradientProblem", "JacobianProblem")]
    missing = [n for n in names if f'id="{n}"' not in page]
    assert not missing, missing
    assert "harness.CheckReport.passed" in page  # members too, not the class alone


def test_the_results_page_names_every_json_field(built):
    page, documented = (DOCS / "results.md").read_text(), (built / "results.html").read_text()
    check = [f.name for f in dataclasses.fields(Check) if not f.name.startswith("_")] + ["not_finite"]
    record = [f.name for f in dataclasses.fields(Record) if f.name not in ("times", "iterations")]
    (run,) = (ROOT / "results").glob("20261126T152556Z_cpu_*.json")
    row = json.loads(compare.table(load(run), "json"))[0]
    header = compare.table(load(run), "csv").splitlines()[0].split(",")
    autodoc = ("harness.results.runs.Row", "harness.distributed.records.Record")
    missing = [
        name
        for name in {*check, *record, *row, *header}
        if f"`{name}`" not in page and not any(f'id="{owner}.{name}"' in documented for owner in autodoc)
    ]
    assert not missing, missing


def test_a_broken_link_fails_the_strict_build(built, tmp_path):
    source = tmp_path / "docs"
    shutil.copytree(DOCS, source, ignore=shutil.ignore_patterns("_build"))
    for name in ("README.md", "CHANGELOG.md", "CONTRIBUTING.md"):  # what the pages include
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "results").symlink_to(ROOT / "results")
    page = source / "running.md"
    page.write_text(page.read_text() + "\nSee [the lost page](nowhere.md).\n")
    done = sphinx_build(source, tmp_path / "html")
    assert done.returncode != 0 and "nowhere" in done.stdout + done.stderr


def command_lines() -> list[tuple[str, str]]:
    """Each ``python -m harness ...`` line of a code block in the README and the docs."""
    found = []
    for path in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *PAGES]:
        text = re.sub(r"\\\n\s*", " ", path.read_text())  # a line continued with a backslash
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("python -m harness ") or line.startswith("pip install -c constraints.txt"):
                found.append((path.name, line.split("&& ")[-1]))
    return found


def test_every_command_line_in_the_docs_parses():
    lines = command_lines()
    assert len(lines) > 30
    for page, line in lines:
        line = re.sub(r"\s+#\s.*$", "", line)  # a comment after the command
        line = re.sub(r"\[([^\]]*)\]", r"\1", line)  # optional parts, shown in brackets
        line = re.sub(r"(\S)\|\S+", r"\1", line)  # alternatives: md|csv|json -> md
        argv = shlex.split(line)
        if argv[:3] != ["python", "-m", "harness"]:
            continue
        try:
            build_parser().parse_args(argv[3:])
        except SystemExit as exc:
            pytest.fail(f"{page}: {line!r} does not parse (exit {exc.code})")


def test_every_test_file_and_script_the_docs_name_exists():
    named = set()
    for path in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *PAGES]:
        named |= set(re.findall(r"\b((?:tests|scripts)/[\w/]+\.(?:py|sh))(?:::(\w+))?", path.read_text()))
    assert len(named) > 10
    for file, test in named:
        assert (ROOT / file).is_file(), file
        assert not test or f"def {test}(" in (ROOT / file).read_text(), f"{file}::{test}"
