"""Hypothesis strategies for live-writer configurations and write schedules."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from h5live.testing._writer import WriterConfig

__all__ = ["write_schedules", "writer_configs"]


@st.composite
def writer_configs(draw: st.DrawFn, /, *, max_frames: int = 120, **fixed: Any) -> WriterConfig:
    """Small but varied :class:`WriterConfig` s: stack or grid, growing or pre-sized, 1-3 keys
    flushed in any order with jitter, batches of frames, either finished-flag shape."""
    if draw(st.booleans()):
        scan_shape: tuple[int, ...] = (draw(st.integers(1, max_frames)),)
    else:
        columns = draw(st.integers(1, 12))
        scan_shape = (draw(st.integers(1, max(1, max_frames // columns))), columns)
    options: dict[str, Any] = {
        "scan_shape": scan_shape,
        "frame_shape": draw(st.sampled_from([(), (3,), (4, 5)])),
        "presized": draw(st.booleans()),
        "n_keys": draw(st.integers(1, 3)),
        "key_order": draw(st.sampled_from(["forward", "reverse", "random"])),
        "key_jitter_s": draw(st.sampled_from([0.0, 0.0005])),
        "flush_every": draw(st.integers(1, 7)),
        "finished_scalar": draw(st.booleans()),
        "key_trailing_ones": draw(st.integers(0, 2)),
        "seed": draw(st.integers(0, 2**16)),
    }
    options.update(fixed)
    return WriterConfig(**options)


@st.composite
def write_schedules(
    draw: st.DrawFn, /, *, n_frames: int, n_keys: int, max_steps: int = 40
) -> list[tuple[Any, ...]]:
    """A sequence of writer steps: ``("append", n)`` writes data for the next ``n`` frames;
    ``("keys", key, frames)`` sets one key at some frames already written, in any order.

    Which frames get keys, and when, is arbitrary, so the complete frames form any prefix.
    """
    steps: list[tuple[Any, ...]] = []
    written = 0
    for _ in range(draw(st.integers(1, max_steps))):
        if written < n_frames and (written == 0 or draw(st.booleans())):
            n = draw(st.integers(1, n_frames - written))
            steps.append(("append", n))
            written += n
        else:
            key = draw(st.integers(0, n_keys - 1))
            frames = draw(st.lists(st.integers(0, written - 1), max_size=written, unique=True))
            steps.append(("keys", key, frames))
    return steps
