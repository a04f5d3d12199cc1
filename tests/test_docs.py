"""The documents a newcomer reads hold together: every relative link of README.md and docs/*.md reaches a file
(and a heading, where it names one), every repository path written in code exists, every `facetool COMMAND
--option` written in the README and the reference docs is an option that the command's `--help` lists, and the
README's first code block still holds the two command lines that `.ci/run` runs."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

import pytest
import typer
from cli_helpers import facetool_in_process

from facetool.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINKED = [ROOT / "README.md", *DOCS]
COMMAND_DOCS = [
    ROOT / "README.md",
    *(ROOT / "docs" / f"{n}.md" for n in ("training", "evaluation", "deployment")),
]
FENCE = re.compile(r"^ *```.*?^ *```[^\n]*$", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SPAN = re.compile(r"`([^`]+)`")
CALL = re.compile(r"(?:^|[\s/])facetool\s+(.*)")
OPTION = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")
REPO_PATH = re.compile(r"^(?:docs|benchmarks|facetool|tests|plugins|\.ci)/[\w./-]*$")
SHELL_JOIN = re.compile(r"&&|\|\||[;|]")


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def fenced_lines(text: str) -> list[str]:
    """The lines of every fenced code block, continuation backslashes joined."""
    lines: list[str] = []
    for block in FENCE.findall(text):
        body = "\n".join(block.splitlines()[1:-1])
        lines += body.replace("\\\n", " ").splitlines()
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lstrip("#").strip())
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, repeated headings numbered as GitHub numbers them."""
    found: set[str] = set()
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        if re.match(r"^#{1,6} ", line):
            base, n = slug(line), 1
            name = base
            while name in found:
                name, n = f"{base}-{n}", n + 1
            found.add(name)
    return found


def link_problems(path: Path) -> list[str]:
    """Relative links of `path` whose file, or whose `#anchor` heading, does not exist."""
    problems = []
    for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        file = (path.parent / file_part).resolve() if file_part else path
        if not file.exists():
            problems.append(f"{path.name}: link to {target}: no such file")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            problems.append(f"{path.name}: link to {target}: no heading #{anchor} in {file.name}")
    return problems


def path_problems(path: Path) -> list[str]:
    """Repository paths written in inline code (`docs/...`, `facetool/...`) that do not exist."""
    spans = SPAN.findall(prose(path.read_text(encoding="utf-8")))
    return [
        f"{path.name}: `{s}` does not exist" for s in spans if REPO_PATH.match(s) and not (ROOT / s).exists()
    ]


def command_calls(path: Path) -> list[str]:
    """Every `facetool ...` call written in the file: in code blocks, in inline code spans of its prose, and the
    options that a commands table's row gives its command."""
    text = path.read_text(encoding="utf-8")
    pieces = [line.lstrip("$ ") for line in fenced_lines(text)]
    for paragraph in re.split(r"\n\s*\n", prose(text)):
        pieces += SPAN.findall(paragraph.replace("\n", " "))
    calls = []
    for row in re.findall(r"^\|(.*)\|$", prose(text), re.M):
        first, *cells = row.split(" | ")
        named = [CALL.search(s) for s in SPAN.findall(first)]
        if named and named[0]:  # a commands table: its options written bare in the row belong to that command
            calls += [
                f"{named[0].group(1)} {s}" for cell in cells for s in SPAN.findall(cell) if s.startswith("-")
            ]
    for piece in pieces:
        for part in SHELL_JOIN.split(piece.split(" #")[0]):
            match = CALL.search(part)
            if match:
                calls.append(match.group(1).strip())
    return calls


@functools.cache
def help_options(*command: str) -> frozenset[str]:
    """The option names the real CLI's `--help` lists for `facetool COMMAND`."""
    result = facetool_in_process(*command, "--help")
    assert result.returncode == 0, result.stderr
    options: set[str] = set()
    section = False
    for line in result.stdout.splitlines():
        if line.strip() == "Options:":
            section = True
        elif section and re.match(r"^ {1,4}-", line):
            options.update(OPTION.findall(re.split(r"\s{2,}", line.strip())[0]))
    return frozenset(options)


@functools.cache
def command_tree() -> dict[str, frozenset[str]]:
    """facetool's commands, each group with its subcommands (an empty set for a plain command)."""
    root = typer.main.get_command(app)
    return {
        name: frozenset(getattr(cmd, "commands", {}))
        for name, cmd in root.commands.items()  # type: ignore[attr-defined]
    }


def option_problems(path: Path) -> list[str]:
    """`facetool COMMAND ... --option` calls naming a command or an option the CLI does not have."""
    problems = []
    tree = command_tree()
    for call in command_calls(path):
        words = call.split()
        if words[0].startswith("-"):
            command: tuple[str, ...] = ()
        elif words[0] not in tree:
            problems.append(f"{path.name}: `facetool {call}`: no command {words[0]!r}")
            continue
        elif tree[words[0]] and len(words) > 1 and not words[1].startswith("-"):
            if words[1] not in tree[words[0]]:
                problems.append(f"{path.name}: `facetool {call}`: no command {words[0]} {words[1]!r}")
                continue
            command = (words[0], words[1])
        else:
            command = (words[0],)
        rest = " ".join(words[len(command) :])
        for option in OPTION.findall(rest):
            if option not in help_options(*command):
                problems.append(f"{path.name}: `facetool {call}`: {' '.join(command)} has no {option}")
    return problems


@pytest.mark.parametrize("path", LINKED, ids=lambda p: p.name)
def test_relative_links_reach_a_file_and_heading(path: Path) -> None:
    problems = link_problems(path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", COMMAND_DOCS, ids=lambda p: p.name)
def test_repository_paths_in_code_exist(path: Path) -> None:
    """(The other docs also name paths that once were, e.g. the history in packaging.md.)"""
    problems = path_problems(path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", COMMAND_DOCS, ids=lambda p: p.name)
def test_every_written_option_is_in_the_commands_help(path: Path) -> None:
    assert command_calls(path), f"{path.name} shows no facetool command"
    problems = option_problems(path)
    assert not problems, "\n".join(problems)


def test_the_checks_catch_a_bad_option_a_bad_command_a_missing_file_and_heading(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Title\n\nRun `facetool train --num-epochs 3 --no-such-option` or\n`facetool dataset filter x -o y "
        "--min-images 2`.\n\n```bash\nfacetool eval a.pth --data x --bogus  # comment --ignored\n"
        "facetool frobnicate --x\n```\n\n[ok](#title), [bad anchor](#nowhere), [gone](missing.md), "
        f"[readme]({ROOT / 'README.md'}#commands), [web](https://example.org/x.md)\n",
        encoding="utf-8",
    )
    assert option_problems(doc) == [
        "doc.md: `facetool eval a.pth --data x --bogus`: eval has no --bogus",
        "doc.md: `facetool frobnicate --x`: no command 'frobnicate'",
        "doc.md: `facetool train --num-epochs 3 --no-such-option`: train has no --no-such-option",
    ]
    assert link_problems(doc) == [
        "doc.md: link to #nowhere: no heading #nowhere in doc.md",
        "doc.md: link to missing.md: no such file",
    ]


def test_slugs_follow_githubs_rules() -> None:
    assert slug("## Scores: `facetool eval --identification`") == "scores-facetool-eval---identification"
    assert slug("### Mined triplets carried into the next epoch (item 2)") == (
        "mined-triplets-carried-into-the-next-epoch-item-2"
    )


def test_the_readmes_first_block_is_the_two_lines_ci_runs() -> None:
    """`.ci/run` runs the line its own extraction command finds in the README: the second of the first block."""
    first = FENCE.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert first is not None
    lines = first.group(0).splitlines()[1:-1]
    assert len(lines) == 2 and lines[0].endswith(".venv/bin/facetool demo") and "-m pytest" in lines[1]
    extract = re.search(r"^line=\$\((.*)\)$", (ROOT / ".ci" / "run").read_text(), re.M)
    assert extract is not None
    ran = subprocess.run(
        ["bash", "-c", extract.group(1)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert ran.stdout.strip() == lines[1]
