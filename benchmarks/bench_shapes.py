"""Chunk and buffer shapes: what ``h5live bench`` measures, on detector-like 512x512 frames.

The engine is ``h5live.bench`` (the same as ``h5live bench``): a sweep of chunk x buffer shapes
through ``copy_live``, uncompressed and with bitshuffle-LZ4; the same copy by plain h5py, raw
chunk copies, hdmf's iterator, swmr_tools and h5live side by side; live latency and keep-up
against a simulated writer process. This script runs it with the sizes below and records the
tables, plots and recommendation in ``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/bench_shapes.py            # full run: JSON, PNGs, benchmarks/RESULTS.md
    python benchmarks/bench_shapes.py --quick    # smoke test (the test suite runs this)
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, parse_args, update_results_md
from h5live.bench import BenchOptions, format_table, run_bench, write_outputs

PREFIX = "shapes_"


def options(quick: bool) -> BenchOptions:
    """512 frames of 512x512 uint16 (268 MB) for the full run."""
    if quick:
        return BenchOptions.quick_defaults()
    return BenchOptions(frames=512, frame_shape=(512, 512), dtype="uint16", compression="auto")


def markdown(results: dict[str, Any], command: str, files: Sequence[str]) -> str:
    lines = [
        "## Choosing chunk and buffer shapes (`bench_shapes.py`, the engine of `h5live bench`)",
        "",
        f"Command: `{command}`  ",
        f"Run: {machine_line(results['machine'])}  ",
        f"Data: {results['data']['description']}; raw data and plots: "
        + ", ".join(f"`benchmarks/results/{name}`" for name in files)
        + ".",
        "",
        f"**{results['recommendation']['line']}**",
        "",
        f"Rule: {results['recommendation']['rule']}.",
        "",
        "```",
        format_table(results),
        "```",
        "",
    ]
    lines += [f"![{name}](results/{name})" for name in files if name.endswith(".png")]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    results = run_bench(options(args.quick), log=lambda line: print(line, file=sys.stderr))
    results["machine"] = machine()
    print(format_table(results))
    print(results["recommendation"]["line"])
    if args.quick:  # every output is made, in a folder that goes away
        with tempfile.TemporaryDirectory() as tmp:
            write_outputs(results, Path(tmp), PREFIX)
        return 0
    files = write_outputs(results, args.out, PREFIX)
    command = "python benchmarks/bench_shapes.py" + ("" if argv is None else " " + " ".join(argv))
    update_results_md("bench_shapes", markdown(results, command.strip(), files))
    print(f"wrote {', '.join(files)} in {args.out} and {Path(__file__).parent / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
