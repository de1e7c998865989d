"""What ``h5live bench`` concludes and shows: the recommendation rule, the table, the plots.

Contract
--------
- :func:`sweep_pick` and :func:`recommend` are the recommendation rule, pure functions of the
  measurements (:data:`RULE` says it in words); nothing in them is a fixed shape.
- :func:`format_table` renders the results as text; :func:`write_plots` renders PNGs with
  matplotlib's Agg backend, or returns a note when matplotlib is not installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "RULE",
    "TOLERANCE",
    "format_table",
    "keep_up_rate",
    "recommend",
    "recommendation_line",
    "sweep_pick",
    "write_plots",
]

#: Throughputs within this fraction of the best are taken as equal (run-to-run noise).
TOLERANCE = 0.10

RULE = (
    "sweep pick: among the chunk x buffer shapes of the recommended compression within "
    f"{TOLERANCE:.0%} of the best throughput, the smallest buffer in bytes (less memory, "
    "less latency), then the faster; recommendation: among the live keep-up choices (the "
    "sweep pick first), the one that keeps up with the highest writer rate, a choice that "
    "keeps up with the unthrottled writer counting as full speed whatever rate that writer "
    "reached, ties to the earlier choice"
)


def sweep_pick(
    points: Sequence[Mapping[str, Any]], tolerance: float = TOLERANCE
) -> Mapping[str, Any]:
    """The sweep point of the rule: within ``tolerance`` of the best ``mb_per_s``, the smallest
    ``buffer_bytes``, then the highest ``mb_per_s``.

    Raises
    ------
    ValueError
        No points.
    """
    if not points:
        raise ValueError("no sweep measurements to choose from")
    best = max(float(p["mb_per_s"]) for p in points)
    near = [p for p in points if float(p["mb_per_s"]) >= (1.0 - tolerance) * best]
    return min(near, key=lambda p: (int(p["buffer_bytes"]), -float(p["mb_per_s"])))


def keep_up_rate(runs: Sequence[Mapping[str, Any]]) -> tuple[float | None, bool]:
    """The highest writer rate a choice kept up with, from its runs in increasing target
    rate (``target_rate_hz`` ``None``: unthrottled), and whether that was the unthrottled
    writer. The rate is the writer's achieved ``writer_rate_hz``. Runs stop at the first
    failure, so the kept-up ones are those before it."""
    best: float | None = None
    at_max = False
    for run in runs:
        if not run["keep_up"]["kept_up"]:
            break
        best = float(run["writer_rate_hz"])
        at_max = run["target_rate_hz"] is None
    return best, at_max


def recommend(choices: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The choice (the sweep pick first) that keeps up with the highest rate; ties go to
    the earlier choice. Each choice has ``keep_up_rate_hz`` (``None``: not even the first
    rate) and ``at_writer_max``: one that kept up with the unthrottled writer keeps up at full
    speed, whatever rate that writer reached in its run (it varies from run to run), so the
    sweep pick, the fastest copy, stays the choice when it does.

    Raises
    ------
    ValueError
        No choices.
    """
    if not choices:
        raise ValueError("no keep-up choices to choose from")

    def rate(choice: Mapping[str, Any]) -> float:
        value = choice.get("keep_up_rate_hz")
        if value is not None and choice.get("at_writer_max"):
            return math.inf
        return -1.0 if value is None else float(value)

    best = max(rate(c) for c in choices)
    return next(c for c in choices if rate(c) >= best)


def _mb(value: float) -> str:
    return f"{value:.0f} MB" if value >= 10 else f"{value:.1f} MB"


def recommendation_line(
    choice: Mapping[str, Any], compression: str, writer_max_hz: float | None = None
) -> str:
    """The one-line recommendation for ``choice`` (see :func:`recommend`); ``writer_max_hz``:
    the writer's rate alone."""
    parts = [
        f"chunk {choice['chunk_frames']} frames, buffer {choice['buffer_chunks']} chunks "
        f"({_mb(choice['buffer_bytes'] / 1e6)})"
    ]
    facts = [f"{choice['mb_per_s']:.0f} MB/s"]
    if choice.get("p99_ms") is not None:
        facts.append(f"p99 latency {choice['p99_ms']:.0f} ms at {choice['p99_rate_hz']:.0f} fps")
    rate = choice.get("keep_up_rate_hz")
    if rate is None:
        facts.append(f"does not keep up even at {choice['first_rate_hz']:.0f} fps")
    elif choice.get("at_writer_max"):
        alone = f"; {writer_max_hz:.0f} fps alone" if writer_max_hz else ""
        facts.append(f"keeps up with the writer at full speed ({rate:.0f} fps{alone})")
    else:
        facts.append(f"keeps up to {rate:.0f} fps")
    return f"Recommendation ({compression}): {parts[0]}: {', '.join(facts)}"


# ---------------------------------------------------------------------- table


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(
        c.ljust(w) if k == 0 else c.rjust(w)
        for k, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    return [_row(header, widths), _row(["-" * w for w in widths], widths)] + [
        _row(r, widths) for r in rows
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(results: Mapping[str, Any]) -> str:
    """The results as text tables: sweep, alternatives, latency, keep-up."""
    lines = [f"Data: {results['data']['description']}", ""]
    if results["options"].get("quick"):
        lines[:0] = [
            "SMOKE TEST (--quick): tiny sizes; the figures below are not measurements.",
            "",
        ]
    for label, sweep in results["sweep"].items():
        lines.append(
            f"1. Sweep, copy_live from a complete source ({label}); memory: tracemalloc peak"
        )
        rows = [
            [
                str(p["chunk_frames"]),
                str(p["buffer_chunks"]),
                _mb(p["buffer_bytes"] / 1e6),
                f"{p['mb_per_s']:.0f}",
                f"{p['peak_mb']:.0f}",
                p["chunk_copy"].split(":")[0],
            ]
            for p in sweep["points"]
        ]
        header = ["chunk (frames)", "buffer (chunks)", "buffer", "MB/s", "peak MB", "chunks"]
        lines += [*_table(header, rows), ""]
        if sweep["skipped"]:
            lines += [f"   skipped: {len(sweep['skipped'])} combinations (see the JSON)", ""]
    alternatives = results["alternatives"]
    for label, methods in alternatives["runs"].items():
        lines.append(
            f"2. The same copy by each method ({label}; {alternatives['rounds']} interleaved "
            "rounds, medians; ratio > 1: faster than plain h5py)"
        )
        rows = []
        for name, m in methods.items():
            if "unavailable" in m:
                rows.append([name, "-", "-", "-", "-", f"skipped: {m['unavailable']}"])
                continue
            rows.append(
                [
                    name,
                    f"{m['seconds']:.3f}",
                    f"{m['mb_per_s']:.0f}",
                    f"{m['vs_h5py']:.2f}x",
                    f"{m['peak_mb']:.0f}",
                    m.get("chunk_copy", ""),
                ]
            )
        header = ["method", "s", "MB/s", "vs h5py", "peak MB", "note"]
        lines += [*_table(header, rows), ""]
    live = results["live"]
    lines.append(
        f"3. Live: writer alone, unthrottled: {live['writer_max_rate_hz']:.0f} frames/s "
        f"({live['compression']})"
    )
    rows = [
        [
            f"{r['chunk_frames']} x {r['buffer_chunks']}",
            _mb(r["buffer_bytes"] / 1e6),
            f"{r['writer_rate_hz']:.0f}",
            _ms(r["latency"]["p50_ms"]),
            _ms(r["latency"]["p99_ms"]),
        ]
        for r in live["latency"]
    ]
    header = ["chunk x buffer", "buffer", "writer fps", "p50 ms", "p99 ms"]
    lines += ["   latency, writer flush to frame complete in the copy:", *_table(header, rows), ""]
    rows = []
    for choice in live["keep_up"]:
        for run in choice["runs"]:
            target = "max" if run["target_rate_hz"] is None else f"{run['target_rate_hz']:.0f}"
            rows.append(
                [
                    f"{choice['chunk_frames']} x {choice['buffer_chunks']}",
                    target,
                    f"{run['writer_rate_hz']:.0f}",
                    _ms(run["latency"]["p99_ms"]),
                    f"{run['keep_up']['end_delay_s']:.2f}",
                    f"{run['keep_up']['growth_s']:.2f}",
                    "yes" if run["keep_up"]["kept_up"] else "NO",
                ]
            )
    header = [
        "chunk x buffer",
        "target fps",
        "writer fps",
        "p99 ms",
        "end s",
        "growth s",
        "kept up",
    ]
    lines += ["   keep-up:", *_table(header, rows)]
    lines += ["", f"   kept up: {live['keep_up_rule']}"]
    return "\n".join(lines)


# ---------------------------------------------------------------------- plots


def write_plots(results: Mapping[str, Any], out: Path, prefix: str = "") -> list[str]:
    """PNGs of the results in ``out``; their names, or a note if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["plots skipped: matplotlib is not installed (pip install matplotlib)"]
    written = []
    for label, sweep in results["sweep"].items():
        chunks = sorted({p["chunk_frames"] for p in sweep["points"]})
        buffers = sorted({p["buffer_chunks"] for p in sweep["points"]})
        grid = [[math.nan] * len(buffers) for _ in chunks]
        for p in sweep["points"]:
            grid[chunks.index(p["chunk_frames"])][buffers.index(p["buffer_chunks"])] = p["mb_per_s"]
        fig, ax = plt.subplots(figsize=(1.4 * len(buffers) + 3, 0.8 * len(chunks) + 2))
        image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if not math.isnan(value):
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", color="w")
        ax.set_xticks(range(len(buffers)), [str(b) for b in buffers])
        ax.set_yticks(range(len(chunks)), [str(c) for c in chunks])
        ax.set_xlabel("buffer (chunks)")
        ax.set_ylabel("chunk (frames)")
        ax.set_title(f"copy_live throughput, MB/s ({label})")
        fig.colorbar(image, ax=ax, label="MB/s")
        fig.tight_layout()
        name = f"{prefix}throughput_{_slug(label)}.png"
        fig.savefig(out / name)
        plt.close(fig)
        written.append(name)
    live = results["live"]
    fig, ax = plt.subplots(figsize=(6, 4))
    runs = live["latency"]
    sizes = [r["buffer_bytes"] / 1e6 for r in runs]
    for key, style in (("p50_ms", "o-"), ("p99_ms", "s--")):
        values = [math.nan if r["latency"][key] is None else r["latency"][key] for r in runs]
        ax.plot(sizes, values, style, label=key.split("_")[0])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("buffer (MB)")
    ax.set_ylabel("latency, flush to copy (ms)")
    rate = runs[0]["writer_rate_hz"] if runs else math.nan
    ax.set_title(f"latency vs buffer size (~{rate:.0f} frames/s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{prefix}latency.png")
    plt.close(fig)
    written.append(f"{prefix}latency.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    names = [f"{c['chunk_frames']} x {c['buffer_chunks']}" for c in live["keep_up"]]
    rates = [c["keep_up_rate_hz"] or 0.0 for c in live["keep_up"]]
    ax.bar(names, rates)
    ax.axhline(live["writer_max_rate_hz"], color="k", linestyle="--", label="writer max (alone)")
    ax.set_xlabel("chunk (frames) x buffer (chunks)")
    ax.set_ylabel("highest rate kept up (frames/s)")
    ax.set_title("live keep-up")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{prefix}keepup.png")
    plt.close(fig)
    written.append(f"{prefix}keepup.png")
    return written


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")
