"""Every code block of README.md runs, against a simulated source.

How README.md's blocks are run (the convention the README is written to):

- A ```` ```python ```` block runs in a fresh interpreter, in a folder where a simulated detector
  (:class:`h5live.testing.WriterProcess`, started by a fixture that ends it) writes ``scan.h5``:
  2000 frames of 32x32 ``uint16`` at 800 frames/s (2.5 s), keys and finished flag in h5live's
  layout, flush times in ``/entry/flush_time``. The detector's first frame comes as the block
  starts, so the block (its imports take a second or two) meets a file that is being written.
- A ```` ```sh ```` block runs line by line in an empty folder: each line is an ``h5live``
  command, run through the CLI entry point (``python -m h5live``) and expected to exit 0; a
  trailing ``&`` starts it in the background (it must exit 0 by the end of the block).
  Comments (``# ...``) are ignored.
- ``<!-- readme-test: skip REASON -->`` on the line before a block skips it (``make`` targets,
  which run this suite). Any other block is an error here: mark it, or make it runnable.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b(?P<reason>.*?)-->")
RUNNABLE = ("python", "sh")
BLOCK_TIMEOUT_S = 120


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # of the opening fence, 1-based
    skip: str | None  # the reason, when the README marks the block


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with the skip marker before each."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = lines[i - 1] if i else ""
        marker = SKIP.search(before)
        skip = (marker.group("reason").strip() or "marked skip") if marker else None
        blocks.append(Block(fence.group(1), "\n".join(lines[i + 1 : end]) + "\n", i + 1, skip))
        i = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text())


def block_id(block: Block) -> str:
    return f"{block.language or 'plain'}-line{block.line}"


def test_the_readme_leads_with_the_iterator_example():
    first_python = next(block for block in BLOCKS if block.language == "python")
    assert "LiveDataChunkIterator(" in first_python.code
    assert "H5DataIO(" in first_python.code
    assert len(README.read_text().encode()) <= 12_500  # a short README; the guide is in docs/


def test_every_block_is_runnable_or_marked():
    unknown = [block_id(b) for b in BLOCKS if b.skip is None and b.language not in RUNNABLE]
    assert not unknown, f"README blocks the test cannot run; mark them skip: {unknown}"


def test_the_block_parser_sees_markers_and_languages():
    text = (
        "x\n<!-- readme-test: skip runs the suite -->\n```sh\nmake test\n```\n\n```python\n1\n```\n"
    )
    blocks = readme_blocks(text)
    assert [(b.language, b.line, b.skip) for b in blocks] == [
        ("sh", 3, "runs the suite"),
        ("python", 7, None),
    ]


def run_python(
    block: Block, folder: Path, spawn, start: Callable[[], None]
) -> subprocess.CompletedProcess[str]:
    script = folder / f"readme_line{block.line}.py"
    script.write_text(block.code)
    process = spawn(
        [sys.executable, str(script)],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    start()  # the source's first frame
    out, err = process.communicate(timeout=BLOCK_TIMEOUT_S)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def commands(block: Block) -> list[tuple[list[str], bool]]:
    """Each line's h5live arguments, and whether it runs in the background."""
    parsed = []
    for line in block.code.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        background = words[-1] == "&"
        words = words[:-1] if background else words
        assert words[0] == "h5live", f"README line {line!r}: only h5live commands run here"
        parsed.append((words[1:], background))
    return parsed


RUN = [b for b in BLOCKS if b.skip is None and b.language in RUNNABLE]


@pytest.mark.live
@pytest.mark.parametrize("block", RUN, ids=[block_id(b) for b in RUN])
def test_readme_block_runs(block, tmp_path, writer_process, spawn):
    if block.language == "python":
        writer = writer_process(
            "scan.h5",
            scan_shape=(2000,),
            frame_shape=(32, 32),
            frame_rate_hz=800,
            timestamps=True,
            hold_at=0,
        )
        result = run_python(block, tmp_path, spawn, start=writer.go)
        assert result.returncode == 0, f"README line {block.line}:\n{result.stderr}"
        assert writer.wait() == 0
        return
    background = []
    for args, in_background in commands(block):
        process = spawn(
            [sys.executable, "-m", "h5live", *args],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if in_background:
            background.append((args, process))
            continue
        _, err = process.communicate(timeout=BLOCK_TIMEOUT_S)
        assert process.returncode == 0, f"h5live {shlex.join(args)}:\n{err}"
    for args, process in background:
        _, err = process.communicate(timeout=BLOCK_TIMEOUT_S)
        assert process.returncode == 0, f"h5live {shlex.join(args)} &:\n{err}"
