"""Processing stages: functions applied to each buffer of complete frames, h5flow's model.

Contract
--------
- A :class:`Stage` maps a stack of frames, shape ``(n, *frame_shape)``, to a stack of the same
  ``n`` frames of its declared output frame shape and dtype. Stage functions always see one
  leading axis, whatever the scan rank: a :class:`StageChain` folds the scan dims of a buffer
  into it (a view for C-contiguous buffers) and unfolds them again afterwards, so scan dims
  pass through intact and frame ``k`` of the output comes from frame ``k`` of the input.
- A stage declares its output from its input: :meth:`Stage.output` maps ``(frame_shape,
  dtype)`` to ``(frame_shape, dtype)`` and raises ``ValueError`` when the input does not suit
  it. Built-in stages (:func:`sum_frames`, :func:`crop_frames`, :func:`bin_frames`,
  :func:`cast_frames`) validate their input there.
- A :class:`StageChain` works out every stage's output when it is built, before any data is
  read (a writer needs the output frame shape and dtype to create its datasets), and names the
  stage, the bad value and the fix when one does not fit. At run time it checks each stage's
  result against the declaration (:class:`StageError`, declared vs got).
- No needless copies: a chain of zero stages returns the buffer itself; a crop is a view; an
  empty buffer does not call the stage functions.
- Built-in stages are picklable (module-level callables), so a chain travels with an iterator
  to worker processes; a stage built on a lambda does not.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from h5live.errors import StageError

__all__ = [
    "Stage",
    "StageChain",
    "StageError",
    "bin_frames",
    "cast_frames",
    "crop_frames",
    "sum_frames",
]

Frames = npt.NDArray[Any]
Output = tuple[tuple[int, ...], np.dtype[Any]]
OutputRule = Callable[[tuple[int, ...], np.dtype[Any]], tuple[Sequence[int], npt.DTypeLike]]
Overflow = Literal["raise", "clip", "wrap"]
BinMethod = Literal["sum", "mean"]


def _frame_shape(value: Any, what: str) -> tuple[int, ...]:
    try:
        shape = tuple(operator.index(n) for n in value)
    except TypeError as exc:
        raise ValueError(
            f"{what} must be a tuple of ints, got {value!r}. Fix: pass e.g. (256, 256), or () "
            "for one number per frame."
        ) from exc
    if any(n < 0 for n in shape):
        raise ValueError(f"{what} must hold sizes >= 0, got {value!r}.")
    return shape


def _numeric(dtype: np.dtype[Any], stage: str) -> None:
    if dtype.kind not in "biufc":
        raise ValueError(
            f"{stage} needs numeric frames, but they have dtype {dtype}. Fix: apply it to a "
            "numeric dataset, or write a Stage of your own for this dtype."
        )


class Stage:
    """A function applied to each buffer of complete frames, with a declared output.

    Parameters
    ----------
    fn
        Called with a stack of frames, shape ``(n, *frame_shape)``, and returns the ``n``
        processed frames, shape ``(n, *output frame_shape)``, of the output dtype (as a numpy
        array). It must work for any ``n >= 1``.
    frame_shape
        The output frame shape (``()``: one number per frame). ``None``: the input's.
    dtype
        The output dtype. ``None``: the input's.
    name
        For messages and ``repr`` (default: the function's name).
    output_rule
        Instead of fixed ``frame_shape``/``dtype``: a function of the input ``(frame_shape,
        dtype)`` returning the output ``(frame_shape, dtype)``, raising ``ValueError`` with a
        message when the input does not suit the stage.

    Raises
    ------
    TypeError
        ``fn`` or ``output_rule`` is not callable.
    ValueError
        ``output_rule`` given together with ``frame_shape`` or ``dtype``, or a bad shape.

    Examples
    --------
    >>> import numpy as np
    >>> profile = Stage(lambda f: f.sum(axis=1), frame_shape=(64,), dtype=np.uint64)
    >>> profile.output((32, 64), np.dtype("uint16"))
    ((64,), dtype('uint64'))
    """

    def __init__(
        self,
        fn: Callable[[Frames], Frames],
        *,
        frame_shape: Sequence[int] | None = None,
        dtype: npt.DTypeLike | None = None,
        name: str | None = None,
        output_rule: OutputRule | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(
                f"a Stage needs a function of a stack of frames, got {fn!r}. Fix: pass e.g. "
                "Stage(lambda frames: frames.sum(axis=1), frame_shape=(64,), dtype='uint64')."
            )
        if output_rule is not None and not callable(output_rule):
            raise TypeError(f"output_rule must be callable, got {output_rule!r}.")
        if output_rule is not None and (frame_shape is not None or dtype is not None):
            raise ValueError(
                "pass either output_rule or frame_shape/dtype, not both. Fix: fixed outputs "
                "take frame_shape= and dtype=; outputs that depend on the input, output_rule=."
            )
        self.fn = fn
        self.frame_shape = None if frame_shape is None else _frame_shape(frame_shape, "frame_shape")
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.name = name if name is not None else getattr(fn, "__name__", type(fn).__name__)
        self.output_rule = output_rule

    def output(self, frame_shape: Sequence[int], dtype: npt.DTypeLike) -> Output:
        """The output frame shape and dtype for input frames of ``frame_shape`` and ``dtype``.

        Raises
        ------
        ValueError
            The input does not suit this stage (the message says why and the fix).
        """
        shape_in = tuple(int(n) for n in frame_shape)
        dtype_in = np.dtype(dtype)
        if self.output_rule is not None:
            shape, out_dtype = self.output_rule(shape_in, dtype_in)
            return _frame_shape(shape, f"the output frame shape of {self.name}"), np.dtype(
                out_dtype
            )
        return (
            shape_in if self.frame_shape is None else self.frame_shape,
            dtype_in if self.dtype is None else self.dtype,
        )

    def __call__(self, frames: Frames) -> Frames:
        """Apply the function to a stack of frames ``(n, *frame_shape)``."""
        return self.fn(frames)

    def __repr__(self) -> str:
        declared = ""
        if self.output_rule is None:
            shape = "as input" if self.frame_shape is None else str(self.frame_shape)
            dtype = "as input" if self.dtype is None else str(self.dtype)
            declared = f" frame_shape={shape} dtype={dtype}"
        return f"<Stage {self.name!r}{declared}>"


# ---------------------------------------------------------------------- built-in stages
# Module-level callables (not closures), so that stages pickle.


@dataclass(frozen=True)
class _SumRule:
    dtype: np.dtype[Any] | None

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Output:
        _numeric(dtype, "sum_frames()")
        if self.dtype is not None:
            return (), self.dtype
        # numpy's accumulator for this dtype: what frame.sum() gives (uint16 -> uint64, ...)
        return (), np.add.reduce(np.zeros((1, 1), dtype=dtype), axis=1).dtype


@dataclass(frozen=True)
class _Sum:
    dtype: np.dtype[Any] | None

    def __call__(self, frames: Frames) -> Frames:
        return np.asarray(frames.sum(axis=tuple(range(1, frames.ndim)), dtype=self.dtype))


def sum_frames(*, dtype: npt.DTypeLike | None = None) -> Stage:
    """A stage that sums each frame to one number (frame shape ``()``), e.g. a total intensity.

    Parameters
    ----------
    dtype
        The output dtype, also the accumulator. ``None``: what ``frame.sum()`` gives (for
        integer frames the 64-bit integer of the same signedness, so it does not overflow for
        any realistic frame; floats keep their precision).

    Examples
    --------
    >>> chain = StageChain([sum_frames()], (4, 4), "uint16")
    >>> chain.frame_shape, chain.dtype
    ((), dtype('uint64'))
    """
    out = None if dtype is None else np.dtype(dtype)
    label = "sum_frames()" if out is None else f"sum_frames(dtype={out.name!r})"
    return Stage(_Sum(out), name=label, output_rule=_SumRule(out))


def _roi_item(item: Any, position: int) -> slice:
    if item is None:
        return slice(None)
    if isinstance(item, slice):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return slice(*item)
    raise ValueError(
        f"crop_frames: item {position} is {item!r}; each frame axis takes a slice, a "
        "(start, stop) pair or None (whole axis). Fix: e.g. crop_frames(slice(100, 200), "
        "(50, 150)) or crop_frames(np.s_[100:200, 50:150])."
    )


@dataclass(frozen=True)
class _CropRule:
    roi: tuple[slice, ...]
    label: str

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Output:
        if len(self.roi) > len(shape):
            raise ValueError(
                f"{self.label} gives {len(self.roi)} slices, but frames of shape {shape} have "
                f"{len(shape)} axes. Fix: one slice per frame axis (at most {len(shape)})."
            )
        out = list(shape)
        for axis, (cut, n) in enumerate(zip(self.roi, shape, strict=False)):
            if cut.step is not None and cut.step < 1:
                raise ValueError(
                    f"{self.label}: frame axis {axis} has step {cut.step!r}. Fix: a step >= 1 "
                    "(or None)."
                )
            for bound in (cut.start, cut.stop):
                if bound is not None and not -n <= bound <= n:
                    raise ValueError(
                        f"{self.label}: {bound!r} is outside frame axis {axis}, of length {n} "
                        f"(frame shape {shape}). Fix: bounds within 0..{n} (or -{n}..-1 from "
                        "the end)."
                    )
            out[axis] = len(range(*cut.indices(n)))
            if out[axis] == 0:
                raise ValueError(
                    f"{self.label}: the region is empty along frame axis {axis} (length {n}, "
                    f"slice {cut.start}:{cut.stop}). Fix: start < stop."
                )
        return tuple(out), dtype


@dataclass(frozen=True)
class _Crop:
    roi: tuple[slice, ...]

    def __call__(self, frames: Frames) -> Frames:
        where = (slice(None), *self.roi)
        return frames[where]  # a view: no copy


def _slice_text(cut: slice) -> str:
    text = f"{'' if cut.start is None else cut.start}:{'' if cut.stop is None else cut.stop}"
    return text if cut.step is None else f"{text}:{cut.step}"


def crop_frames(*roi: slice | tuple[int | None, int | None] | None) -> Stage:
    """A stage that keeps a region of interest of each frame (a view, no copy).

    Parameters
    ----------
    *roi
        One item per frame axis, from the first: a ``slice``, a ``(start, stop)`` pair or
        ``None`` (the whole axis); axes not given are kept whole. ``np.s_[100:200, 50:150]``
        works too. Bounds must lie inside the frame: unlike numpy, a region that runs past
        the frame is an error, not silently cut short.

    Raises
    ------
    ValueError
        An item that is not a slice, pair or None (here); more slices than frame axes, a bound
        outside the frame, a step below 1 or an empty region (when the chain is built).

    Examples
    --------
    >>> StageChain([crop_frames(slice(2, 6), (0, 3))], (8, 8), "uint16").frame_shape
    (4, 3)
    """
    items: Sequence[Any] = roi
    if len(roi) == 1 and isinstance(roi[0], tuple) and any(isinstance(s, slice) for s in roi[0]):
        items = roi[0]  # np.s_[a:b, c:d]
    cuts = tuple(_roi_item(item, k) for k, item in enumerate(items))
    for cut in cuts:
        for bound in (cut.start, cut.stop, cut.step):
            if bound is not None and not isinstance(bound, (int, np.integer)):
                raise ValueError(
                    f"crop_frames: bounds must be integers, got {bound!r} in {cut!r}. Fix: "
                    "pass pixel indices."
                )
    label = f"crop_frames[{', '.join(_slice_text(c) for c in cuts)}]"
    return Stage(_Crop(cuts), name=label, output_rule=_CropRule(cuts, label))


def _exact_sum_dtype(dtype: np.dtype[Any], count: int) -> np.dtype[Any] | None:
    """The smallest dtype of ``dtype``'s kind that holds the sum of ``count`` of its values
    (``dtype`` itself for floats); None if no integer type does."""
    if dtype.kind not in "biu":
        return dtype
    if dtype.kind == "b":
        lo, hi, kind = 0, count, "u"
    else:
        info = np.iinfo(dtype)
        lo, hi, kind = int(info.min) * count, int(info.max) * count, dtype.kind
    for size in (1, 2, 4, 8):
        candidate = np.dtype(f"{kind}{size}")
        if (
            size >= dtype.itemsize
            and np.iinfo(candidate).min <= lo <= hi <= np.iinfo(candidate).max
        ):
            return candidate
    return None


@dataclass(frozen=True)
class _BinRule:
    factors: tuple[int, ...]
    method: BinMethod
    dtype: np.dtype[Any] | None
    label: str

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Output:
        _numeric(dtype, self.label)
        if len(self.factors) != len(shape):
            raise ValueError(
                f"{self.label} gives {len(self.factors)} factor(s), but frames of shape {shape} "
                f"have {len(shape)} axes. Fix: one factor per frame axis (1 keeps an axis)."
            )
        for axis, (factor, n) in enumerate(zip(self.factors, shape, strict=True)):
            if n % factor:
                fit = n - n % factor
                raise ValueError(
                    f"{self.label}: frame axis {axis} has length {n}, which {factor} does not "
                    f"divide (frame shape {shape}). Fix: crop it first, e.g. a crop_frames "
                    f"stage keeping 0:{fit} on axis {axis} before this one, or a factor that "
                    f"divides {n}."
                )
        out = tuple(n // f for n, f in zip(shape, self.factors, strict=True))
        if self.dtype is not None:
            return out, self.dtype
        if self.method == "mean":
            return out, np.dtype(np.result_type(dtype, np.float32))
        exact = _exact_sum_dtype(dtype, math.prod(self.factors))
        if exact is None:
            raise ValueError(
                f"{self.label}: the sum of {math.prod(self.factors)} values of dtype {dtype} "
                "may not fit any integer type. Fix: pass dtype= (e.g. 'float64'), or "
                "method='mean'."
            )
        return out, exact


@dataclass(frozen=True)
class _Bin:
    rule: _BinRule

    def __call__(self, frames: Frames) -> Frames:
        dtype = self.rule(frames.shape[1:], frames.dtype)[1]
        shape = [frames.shape[0]]
        for n, factor in zip(frames.shape[1:], self.rule.factors, strict=True):
            shape += [n // factor, factor]
        blocks = frames.reshape(shape)  # a view when contiguous
        axes = tuple(range(2, 2 * len(self.rule.factors) + 1, 2))
        if self.rule.method == "sum":
            return np.asarray(blocks.sum(axis=axes, dtype=dtype))
        return np.asarray(blocks.mean(axis=axes, dtype=dtype))


def bin_frames(
    *factors: int, method: BinMethod = "sum", dtype: npt.DTypeLike | None = None
) -> Stage:
    """A stage that bins each frame: blocks of ``factors`` pixels become one.

    Parameters
    ----------
    *factors
        One integer >= 1 per frame axis (``bin_frames(2, 2)`` for 2x2 binning of images).
        Each must divide its axis; crop first if it does not.
    method
        ``"sum"`` (default: counts are kept, as for photon-counting detectors) or ``"mean"``.
    dtype
        The output dtype. ``None``: for ``"sum"``, the smallest integer type of the input's
        signedness that holds the sum exactly (``uint16`` binned 2x2 -> ``uint32``; floats keep
        their dtype); for ``"mean"``, at least ``float32`` (``float64`` for 32- and 64-bit
        integers). A ``dtype`` given is also the accumulator; a sum that exceeds it wraps.

    Raises
    ------
    ValueError
        A factor below 1 or not an integer, or an unknown method (here); a factor count that is
        not the frame rank, or an axis the factor does not divide (when the chain is built).

    Examples
    --------
    >>> chain = StageChain([bin_frames(2, 4)], (8, 8), "uint16")
    >>> chain.frame_shape, chain.dtype
    ((4, 2), dtype('uint32'))
    """
    if method not in ("sum", "mean"):
        raise ValueError(f"bin_frames: method must be 'sum' or 'mean', got {method!r}.")
    checked: list[int] = []
    for factor in factors:
        if not isinstance(factor, (int, np.integer)) or isinstance(factor, bool) or factor < 1:
            raise ValueError(
                f"bin_frames: factors must be integers >= 1, got {factors!r}. Fix: e.g. "
                "bin_frames(2, 2) for 2x2 binning."
            )
        checked.append(int(factor))
    if not checked:
        raise ValueError("bin_frames: no factors given. Fix: one per frame axis, e.g. (2, 2).")
    out = None if dtype is None else np.dtype(dtype)
    extra = "" if method == "sum" else f", method={method!r}"
    extra += "" if out is None else f", dtype={out.name!r}"
    label = f"bin_frames({', '.join(map(str, checked))}{extra})"
    rule = _BinRule(tuple(checked), method, out, label)
    return Stage(_Bin(rule), name=label, output_rule=rule)


def _lossless_range(source: np.dtype[Any], target: np.dtype[Any]) -> bool:
    """Every value of ``source`` is within the range of ``target`` (precision aside)."""
    if np.can_cast(source, target, "safe"):
        return True
    return source.kind in "biu" and target.kind in "fc"  # any integer fits a float's range


@dataclass(frozen=True)
class _CastRule:
    dtype: np.dtype[Any]
    label: str

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Output:
        _numeric(dtype, self.label)
        if dtype.kind == "c" and self.dtype.kind != "c":
            raise ValueError(
                f"{self.label}: frames of dtype {dtype} are complex; casting drops the "
                "imaginary part. Fix: a Stage(np.abs, dtype=...) or Stage(np.real, ...) first."
            )
        return shape, self.dtype


@dataclass(frozen=True)
class _Cast:
    dtype: np.dtype[Any]
    overflow: Overflow
    label: str

    def _refuse(self, frames: Frames, problem: str) -> StageError:
        return StageError(
            f"{self.label}: frames of dtype {frames.dtype} hold {problem}, which {self.dtype} "
            f"cannot hold. Fix: overflow='clip' to saturate at the limits of {self.dtype}, a "
            "wider dtype, or overflow='wrap' for numpy's astype (values wrap around)."
        )

    def _to_float(self, frames: Frames) -> Frames:
        """Float (or complex) to a narrower one: numpy flags the overflow itself."""
        target = self.dtype
        if self.overflow == "clip" and target.kind == "f":
            big = float(np.finfo(target).max)
            return np.clip(frames, -big, big).astype(target)
        with np.errstate(over="raise"):
            try:
                return frames.astype(target)
            except FloatingPointError:
                raise self._refuse(frames, f"a value beyond +-{np.finfo(target).max:g}") from None

    def _to_int(self, frames: Frames) -> Frames:
        target = self.dtype
        info = np.iinfo(target)
        lo, hi = frames.min().item(), frames.max().item()  # NaN if there is one
        if isinstance(lo, float) and (math.isnan(lo) or math.isnan(hi)):
            raise StageError(
                f"{self.label}: frames hold NaN, which has no {target} value. Fix: replace NaN "
                "first, e.g. a Stage(np.nan_to_num) before this one."
            )
        if info.min <= lo and hi <= info.max:
            return frames.astype(target)
        if self.overflow == "raise":
            raise self._refuse(frames, f"values from {lo} to {hi}, outside {info.min}..{info.max}")
        # clip, to bounds that the frames' dtype holds and that lie inside the target's
        if frames.dtype.kind == "f":
            kind = frames.dtype.type
            low, high = kind(info.min), kind(info.max)
            if float(high) > info.max:  # e.g. 2**63 - 1 rounds up to 2**63 in float64
                high = np.nextafter(high, kind(0))
            return np.clip(frames, low, high).astype(target)
        source = np.iinfo(frames.dtype)
        low_i, high_i = max(int(info.min), int(source.min)), min(int(info.max), int(source.max))
        return np.clip(frames, low_i, high_i).astype(target)

    def __call__(self, frames: Frames) -> Frames:
        target = self.dtype
        if _lossless_range(frames.dtype, target):
            return frames.astype(target, copy=False)
        if self.overflow == "wrap":
            with np.errstate(all="ignore"):
                return frames.astype(target)
        if target.kind in "fc":
            return self._to_float(frames)
        return self._to_int(frames)


def cast_frames(dtype: npt.DTypeLike, *, overflow: Overflow = "raise") -> Stage:
    """A stage that converts frames to another dtype (as ``ndarray.astype``, but safe).

    Parameters
    ----------
    dtype
        The output dtype.
    overflow
        What to do with values the output dtype cannot hold, when the cast can lose range
        (e.g. ``uint32`` -> ``uint16``, ``float64`` -> ``int16`` or ``float32``):
        ``"raise"`` (default) raises :class:`StageError` naming the values, rather than
        writing wrong numbers; ``"clip"`` saturates at the limits of ``dtype`` (as a detector
        saturates; NaN cannot become an integer and still raises); ``"wrap"`` is numpy's
        ``astype`` (integers wrap around). Casts that keep the range (``uint16`` ->
        ``uint32``, any integer -> float) never check: integers above 2**24 lose precision in
        ``float32``, and float -> integer truncates towards zero, as in numpy.

    Raises
    ------
    ValueError
        An unknown ``overflow`` (here); non-numeric or complex frames cast to a real dtype
        (when the chain is built).

    Examples
    --------
    >>> chain = StageChain([cast_frames("uint8", overflow="clip")], (3,), "uint16")
    >>> chain(np.array([[0, 200, 300]], dtype="uint16"))
    array([[  0, 200, 255]], dtype=uint8)
    """
    if overflow not in ("raise", "clip", "wrap"):
        raise ValueError(
            f"cast_frames: overflow must be 'raise', 'clip' or 'wrap', got {overflow!r}."
        )
    target = np.dtype(dtype)
    extra = "" if overflow == "raise" else f", overflow={overflow!r}"
    label = f"cast_frames({target.name!r}{extra})"
    return Stage(_Cast(target, overflow, label), name=label, output_rule=_CastRule(target, label))


# ---------------------------------------------------------------------- chains


class StageChain:
    """Stages applied in order to buffers of frames of one shape and dtype.

    Parameters
    ----------
    stages
        :class:`Stage` objects, applied first to last (a single Stage, or None: no stages).
    frame_shape, dtype
        The frames the chain receives: the source dataset's frame shape and dtype.

    Attributes
    ----------
    frame_shape, dtype
        The output frame shape and dtype (the input's when there are no stages): what a
        destination dataset must hold, known before any data is read.
    input_frame_shape, input_dtype
        The input's.
    steps : list of (tuple, numpy.dtype)
        Each stage's output, in order.

    Raises
    ------
    TypeError
        An item is not a :class:`Stage`.
    StageError
        A stage does not fit its input (the message names the stage, its input, the bad value
        and the fix).

    Examples
    --------
    >>> chain = StageChain([crop_frames(slice(0, 4)), bin_frames(2, 2)], (6, 4), "uint16")
    >>> buffer = np.ones((10, 3, 6, 4), dtype="uint16")  # a 10x3 grid scan
    >>> chain(buffer).shape, chain.dtype
    ((10, 3, 2, 2), dtype('uint32'))
    """

    def __init__(
        self,
        stages: Sequence[Stage] | Stage | None,
        frame_shape: Sequence[int],
        dtype: npt.DTypeLike,
    ) -> None:
        if stages is None:
            stages = ()
        elif isinstance(stages, Stage):
            stages = (stages,)
        self.stages: tuple[Stage, ...] = tuple(stages)
        self.input_frame_shape = _frame_shape(frame_shape, "frame_shape")
        self.input_dtype: np.dtype[Any] = np.dtype(dtype)
        self.steps: list[Output] = []
        shape, current = self.input_frame_shape, self.input_dtype
        for position, stage in enumerate(self.stages):
            if not isinstance(stage, Stage):
                hint = "wrap it: Stage(fn, frame_shape=..., dtype=...)" if callable(stage) else ""
                raise TypeError(
                    f"stage {position} is {stage!r}, not a Stage. Fix: "
                    f"{hint or 'pass Stage objects, e.g. h5live.sum_frames()'}."
                )
            try:
                shape, current = stage.output(shape, current)
            except ValueError as exc:
                raise StageError(
                    f"stage {position} ({stage.name}) does not fit frames of shape {shape} and "
                    f"dtype {current}: {exc}"
                ) from exc
            self.steps.append((shape, current))
        self.frame_shape: tuple[int, ...] = shape
        self.dtype: np.dtype[Any] = current

    def __len__(self) -> int:
        return len(self.stages)

    def __call__(self, buffer: Frames) -> Frames:
        """Apply the stages to a buffer of frames; see :meth:`apply`."""
        return self.apply(buffer)

    def apply(self, buffer: Frames) -> Frames:
        """Apply the stages to a buffer ``(*scan, *frame_shape)``; the scan dims are kept.

        Returns
        -------
        numpy.ndarray
            Shape ``(*scan, *self.frame_shape)``, dtype ``self.dtype``. With no stages, the
            buffer itself.

        Raises
        ------
        StageError
            The buffer does not end with the input frame shape (e.g. a buffer that cuts frames
            into tiles), or a stage returned data unlike what it declared.
        """
        if not self.stages:
            return buffer
        rank = len(self.input_frame_shape)
        scan = buffer.shape[: buffer.ndim - rank]
        if buffer.ndim < rank or buffer.shape[buffer.ndim - rank :] != self.input_frame_shape:
            raise StageError(
                f"a buffer of shape {buffer.shape} does not end with whole frames of shape "
                f"{self.input_frame_shape}: stages need whole frames. Fix: use buffers that "
                "span whole frames (e.g. buffer_shape ending with the frame shape)."
            )
        n = math.prod(scan)
        if n == 0:
            return np.empty((*scan, *self.frame_shape), dtype=self.dtype)
        frames = buffer.reshape((n, *self.input_frame_shape))  # a view when contiguous
        for position, (stage, (shape, dtype)) in enumerate(
            zip(self.stages, self.steps, strict=True)
        ):
            result = stage(frames)
            if not isinstance(result, np.ndarray):
                got = f"a {type(result).__name__}, not an array"
            elif result.shape != (n, *shape) or result.dtype != dtype:
                got = f"shape {result.shape} and dtype {result.dtype}"
            else:
                frames = result
                continue
            raise StageError(
                f"stage {position} ({stage.name}) declared frames of shape {shape} and dtype "
                f"{dtype}, so {n} frames of shape {(n, *shape)}, but returned {got}. Fix: make "
                "the function return an array of shape (n, *frame_shape) and the declared dtype "
                "(e.g. with .astype(...)), or declare what it returns: Stage(fn, frame_shape=..., "
                "dtype=...)."
            )
        return frames.reshape((*scan, *self.frame_shape))

    def __repr__(self) -> str:
        names = ", ".join(stage.name for stage in self.stages) or "no stages"
        return (
            f"<StageChain [{names}] {self.input_frame_shape} {self.input_dtype} -> "
            f"{self.frame_shape} {self.dtype}>"
        )
