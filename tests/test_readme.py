"""The shell blocks of the README and of docs/*.md, run top to bottom, so that what they tell a user stays true.

README.md first, then docs/*.md in name order, all in one scratch directory (the docs use what the
README's walk-through made).

Convention (stated in the README's walk-through too):
  ```sh    blocks are run by this test, in README order, in one scratch directory that looks like the
           repository root (every top-level entry linked, `out/` private), so later blocks use what
           earlier ones made (out/models/xo_mlp.keras, out/xo.kmodel, ...);
  ```text  blocks (and any other language) are shown only: real boards, `make`, minutes-long runs.
Each logical line (backslash continuations joined) must exit 0, or the code its trailing comment
names as `# exit N`. Plain `.venv/bin/k210 ...` lines run in this process (TensorFlow is imported
once, which keeps the walk fast); anything with shell syntax runs under bash.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINE_TIMEOUT_S = 600
_SHELL_SYNTAX = re.compile(r"[|&;<>`$()]")
_EXPECTED = re.compile(r"#\s*exit\s+(\d+)")


@dataclass(frozen=True)
class Command:
    line: int  # where it starts in its file
    text: str
    expected: int
    file: str = "README.md"


def sh_blocks(markdown: str, file: str = "README.md") -> list[list[Command]]:
    """The commands of each ```sh block, in order."""
    blocks: list[list[Command]] = []
    current: list[Command] | None = None
    pending, start = "", 0
    for number, raw in enumerate(markdown.splitlines(), 1):
        fence = raw.strip()
        if fence.startswith("```"):
            if current is None:
                if fence[3:].strip().split(" ")[0] in ("sh", "bash", "shell"):
                    current = []
            else:
                blocks.append(current)
                current = None
            continue
        if current is None:
            continue
        if not pending:
            start = number
        if raw.rstrip().endswith("\\"):
            pending += raw.strip()[:-1].strip() + " "
            continue
        text = (pending + raw.strip()).strip()
        pending = ""
        if not text or text.startswith("#"):
            continue
        expected = _EXPECTED.search(text[text.index(" #"):]) if " #" in text else None
        current.append(Command(start, text, int(expected.group(1)) if expected else 0, file))
    return blocks


BLOCKS = [block for doc in DOCS for block in sh_blocks(doc.read_text(), str(doc.relative_to(ROOT)))]
_ran: set[int] = set()


def test_the_readme_has_runnable_blocks():
    assert BLOCKS and sum(len(b) for b in BLOCKS) >= 8, "the walk-through should be ```sh blocks"


def test_the_readme_is_for_a_newcomer():
    """Issue 25: at most 150 lines; results, guides and reference live in docs/, each linked from it."""
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", text))
    assert linked == {str(doc.relative_to(ROOT)) for doc in sorted((ROOT / "docs").glob("*.md"))}


def test_the_parser_follows_the_convention():
    text = "```text\nmake test\n```\n```sh\na --x \\\n  --y   # exit 1: why\n# comment\nb\n```\n"
    assert sh_blocks(text) == [[Command(5, "a --x --y   # exit 1: why", 1), Command(8, "b", 0)]]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A directory that looks like the repository root, with its own out/."""
    work = tmp_path_factory.mktemp("readme")
    for entry in ROOT.iterdir():
        if entry.name not in ("out", ".git") and not entry.name.startswith(".pytest"):
            (work / entry.name).symlink_to(entry)
    (work / "out").mkdir()
    return work


def _in_process(args: list[str], capsys) -> tuple[int, str]:
    from k210.host.cli import main

    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _in_bash(text: str, cwd: Path) -> tuple[int, str]:
    env = dict(os.environ, PATH=f"{cwd / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(["bash", "-c", text], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=LINE_TIMEOUT_S, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def run_command(command: Command, cwd: Path, capsys, monkeypatch) -> tuple[int, str]:
    code_part = command.text.split(" #", 1)[0] if " #" in command.text else command.text
    words = shlex.split(code_part, comments=True)
    if words and words[0] in (".venv/bin/k210", "k210") and not _SHELL_SYNTAX.search(code_part):
        monkeypatch.chdir(cwd)
        return _in_process(words[1:], capsys)
    return _in_bash(command.text, cwd)


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i}-{b[0].file}:{b[0].line}" if b else f"block{i}"
                                                            for i, b in enumerate(BLOCKS)])
def test_readme_block(index, scratch, capsys, monkeypatch):
    monkeypatch.setenv("K210_PROGRESS_EVERY", "30")
    for earlier in range(index):  # a block run alone (-k) still gets what the blocks above it make
        if earlier not in _ran:
            _ran.add(earlier)
            for command in BLOCKS[earlier]:
                run_command(command, scratch, capsys, monkeypatch)
    _ran.add(index)
    for command in BLOCKS[index]:
        started = time.monotonic()
        code, output = run_command(command, scratch, capsys, monkeypatch)
        seconds = time.monotonic() - started
        print(f"{command.file}:{command.line} exit {code} in {seconds:.1f} s: {command.text}", file=sys.__stderr__)
        assert code == command.expected, (
            f"{command.file}:{command.line}: `{command.text}` exited {code}, the doc says {command.expected}\n"
            + "\n".join(output.splitlines()[-25:]))
