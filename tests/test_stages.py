"""Processing stages: declared outputs, validation against the source's frames, run-time checks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from h5live import (
    Stage,
    StageChain,
    bin_frames,
    cast_frames,
    crop_frames,
    sum_frames,
)
from h5live.errors import StageError


def ramp(shape, dtype="uint16"):
    return (np.arange(int(np.prod(shape))) % 1000).reshape(shape).astype(dtype)


# ---------------------------------------------------------------------- Stage


def test_stage_declares_fixed_outputs():
    stage = Stage(lambda f: f.sum(axis=1), frame_shape=[64], dtype="uint64", name="profile")
    assert stage.output((32, 64), np.dtype("uint16")) == ((64,), np.dtype("uint64"))
    assert "profile" in repr(stage)


def test_stage_without_declarations_keeps_the_input_shape_and_dtype():
    stage = Stage(np.sqrt)
    assert stage.output((3, 4), "float32") == ((3, 4), np.dtype("float32"))
    assert stage.name == "sqrt"


def test_stage_output_rule_and_fixed_outputs_are_exclusive():
    with pytest.raises(ValueError, match="not both"):
        Stage(np.sqrt, frame_shape=(2,), output_rule=lambda s, d: (s, d))


def test_stage_needs_a_function():
    with pytest.raises(TypeError, match="function of a stack of frames"):
        Stage("sum")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(2.5,), (-1,), 3], ids=["float", "negative", "not-a-tuple"])
def test_stage_rejects_a_bad_frame_shape(shape):
    with pytest.raises(ValueError, match="frame_shape"):
        Stage(np.sqrt, frame_shape=shape)


# ---------------------------------------------------------------------- chains


def test_no_stages_return_the_buffer_itself():
    buffer = ramp((5, 4, 4))
    chain = StageChain([], (4, 4), "uint16")
    assert chain(buffer) is buffer
    assert (chain.frame_shape, chain.dtype) == ((4, 4), np.dtype("uint16"))


@pytest.mark.parametrize("stages", [None, sum_frames()], ids=["none", "single-stage"])
def test_chain_accepts_none_or_one_stage(stages):
    chain = StageChain(stages, (2, 2), "uint8")
    assert len(chain) == (0 if stages is None else 1)


def test_chain_keeps_the_scan_dims_of_a_grid_buffer():
    buffer = ramp((3, 4, 6, 5))  # a 3x4 grid scan of 6x5 frames
    out = StageChain([sum_frames()], (6, 5), "uint16")(buffer)
    assert out.shape == (3, 4)
    np.testing.assert_array_equal(out, buffer.sum(axis=(2, 3)))


def test_chain_of_a_single_frame_without_scan_dims():
    frame = ramp((6, 4))
    out = StageChain([bin_frames(2, 2)], (6, 4), "uint16")(frame)
    np.testing.assert_array_equal(out, frame.reshape(3, 2, 2, 2).sum(axis=(1, 3)))


def test_stages_apply_in_order():
    buffer = ramp((2, 7, 8))
    chain = StageChain([crop_frames((1, 7)), bin_frames(3, 4), sum_frames()], (7, 8), "uint16")
    expected = buffer[:, 1:7].reshape(2, 2, 3, 2, 4).sum(axis=(2, 4)).sum(axis=(1, 2))
    np.testing.assert_array_equal(chain(buffer), expected)
    assert chain.steps == [
        ((6, 8), np.dtype("uint16")),
        ((2, 2), np.dtype("uint32")),
        ((), np.dtype("uint64")),
    ]


def test_chain_validation_names_the_stage_the_value_and_the_fix():
    with pytest.raises(StageError) as info:
        StageChain([sum_frames(), bin_frames(2, 2)], (8, 8), "uint16")
    message = str(info.value)
    assert "stage 1 (bin_frames(2, 2))" in message
    assert "shape ()" in message
    assert "Fix:" in message


def test_a_function_in_the_chain_is_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"stage 0 .* wrap it: Stage\(fn"):
        StageChain([np.sqrt], (2,), "float64")  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("fn", "got"),
    [
        (lambda f: f.sum(axis=(1, 2), keepdims=True), r"shape \(4, 1, 1\)"),
        (lambda f: f.sum(axis=(1, 2), dtype="int64"), "dtype int64"),
        (lambda f: float(f.sum()), "a float, not an array"),
    ],
    ids=["wrong-shape", "wrong-dtype", "not-an-array"],
)
def test_a_stage_returning_other_than_declared_is_an_error(fn, got):
    chain = StageChain([Stage(fn, frame_shape=(), dtype="uint64", name="mine")], (3, 3), "uint16")
    with pytest.raises(StageError, match=r"stage 0 \(mine\) declared .*\(\).*uint64.*" + got):
        chain(ramp((4, 3, 3)))


def test_a_buffer_that_cuts_frames_is_an_error():
    chain = StageChain([sum_frames()], (4, 4), "uint16")
    with pytest.raises(StageError, match="whole frames of shape"):
        chain(ramp((5, 4, 2)))


def test_an_empty_buffer_does_not_call_the_stages():
    def explode(frames):
        raise AssertionError("called on an empty buffer")

    chain = StageChain([Stage(explode, frame_shape=(2,), dtype="float32")], (4,), "uint16")
    out = chain(ramp((0, 3, 4)))
    assert (out.shape, out.dtype) == ((0, 3, 2), np.dtype("float32"))


def test_chains_of_built_in_stages_pickle():
    chain = StageChain(
        [crop_frames(np.s_[1:5]), bin_frames(2, 2), cast_frames("uint8", overflow="clip")],
        (6, 4),
        "uint16",
    )
    buffer = ramp((3, 6, 4))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(chain))(buffer), chain(buffer))


# ---------------------------------------------------------------------- sum_frames


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("uint16", "uint64"), ("int8", "int64"), ("float32", "float32"), ("bool", "int64")],
    ids=["uint16", "int8", "float32", "bool"],
)
def test_sum_frames_dtype_is_what_frame_sum_gives(dtype, expected):
    chain = StageChain([sum_frames()], (4, 4), dtype)
    assert (chain.frame_shape, chain.dtype) == ((), np.dtype(expected))
    frames = ramp((3, 4, 4), dtype)
    np.testing.assert_array_equal(chain(frames), [f.sum() for f in frames])


def test_sum_frames_does_not_overflow_uint16_frames():
    frames = np.full((2, 64, 64), 65535, dtype="uint16")
    out = StageChain([sum_frames()], (64, 64), "uint16")(frames)
    assert out.tolist() == [65535 * 64 * 64] * 2


def test_sum_frames_with_a_dtype():
    chain = StageChain([sum_frames(dtype="float32")], (2, 3), "uint16")
    out = chain(ramp((4, 2, 3)))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ramp((4, 2, 3)).sum(axis=(1, 2)))


def test_sum_frames_refuses_non_numeric_frames():
    with pytest.raises(StageError, match="numeric"):
        StageChain([sum_frames()], (2,), "S4")


# ---------------------------------------------------------------------- crop_frames


@pytest.mark.parametrize(
    "roi",
    [
        (slice(2, 6), slice(1, 4)),
        ((2, 6), (1, 4)),
        (np.s_[2:6, 1:4],),
        (slice(2, 6), (1, -1)),
    ],
    ids=["slices", "pairs", "np.s_", "negative-stop"],
)
def test_crop_frames_is_a_view_of_the_region(roi):
    buffer = ramp((3, 8, 5))
    out = StageChain([crop_frames(*roi)], (8, 5), "uint16")(buffer)
    np.testing.assert_array_equal(out, buffer[:, 2:6, 1:4])
    assert np.shares_memory(out, buffer)


def test_crop_frames_keeps_axes_not_given_and_steps():
    chain = StageChain([crop_frames(slice(0, 8, 2))], (8, 5), "uint16")
    assert chain.frame_shape == (4, 5)
    np.testing.assert_array_equal(chain(ramp((2, 8, 5))), ramp((2, 8, 5))[:, ::2])


@pytest.mark.parametrize(
    ("roi", "match"),
    [
        ((slice(0, 600),), r"600 is outside frame axis 0, of length 512"),
        ((None, slice(-600, None)), r"-600 is outside frame axis 1, of length 256"),
        ((slice(0, 2), slice(0, 2), slice(0, 2)), "3 slices, but frames of shape"),
        ((slice(5, 5),), "empty along frame axis 0"),
        ((slice(0, 10, -1),), "step -1"),
    ],
    ids=["past-the-end", "before-the-start", "too-many-axes", "empty", "negative-step"],
)
def test_crop_frames_is_validated_against_the_frame_shape(roi, match):
    with pytest.raises(StageError, match=match):
        StageChain([crop_frames(*roi)], (512, 256), "uint16")


@pytest.mark.parametrize(
    "item", [3, (1, 2, 3), slice(0.5, 2)], ids=["int", "triple", "float-bound"]
)
def test_crop_frames_refuses_items_that_are_not_regions(item):
    with pytest.raises(ValueError, match="crop_frames"):
        crop_frames(item)


# ---------------------------------------------------------------------- bin_frames


def test_bin_frames_sums_blocks():
    buffer = ramp((3, 4, 6))
    chain = StageChain([bin_frames(2, 3)], (4, 6), "uint16")
    assert chain.frame_shape == (2, 2)
    np.testing.assert_array_equal(chain(buffer), buffer.reshape(3, 2, 2, 2, 3).sum(axis=(2, 4)))


@pytest.mark.parametrize(
    ("dtype", "factors", "expected"),
    [
        ("uint16", (2, 2), "uint32"),
        ("uint8", (2, 2), "uint16"),
        ("uint8", (1, 1), "uint8"),
        ("int16", (2, 2), "int32"),
        ("bool", (2, 2), "uint8"),
        ("float32", (2, 2), "float32"),
    ],
    ids=["uint16", "uint8", "uint8-by-1", "int16", "bool", "float32"],
)
def test_bin_frames_sum_dtype_holds_the_sum_exactly(dtype, factors, expected):
    chain = StageChain([bin_frames(*factors)], (4, 4), dtype)
    assert chain.dtype == np.dtype(expected)


def test_bin_frames_sum_of_saturated_pixels_does_not_wrap():
    frames = np.full((1, 4, 4), 65535, dtype="uint16")
    out = StageChain([bin_frames(2, 2)], (4, 4), "uint16")(frames)
    assert out.tolist() == [[[4 * 65535] * 2] * 2]


def test_bin_frames_mean():
    buffer = ramp((2, 4, 4))
    chain = StageChain([bin_frames(2, 2, method="mean")], (4, 4), "uint16")
    assert chain.dtype == np.float32
    np.testing.assert_allclose(chain(buffer), buffer.reshape(2, 2, 2, 2, 2).mean(axis=(2, 4)))


def test_bin_frames_with_a_dtype():
    chain = StageChain([bin_frames(2, method="mean", dtype="float64")], (6,), "uint16")
    assert chain.dtype == np.float64
    np.testing.assert_allclose(chain(ramp((1, 6))), [[0.5, 2.5, 4.5]])


def test_bin_frames_needs_factors_that_divide_the_frame():
    with pytest.raises(StageError) as info:
        StageChain([bin_frames(2, 3)], (512, 100), "uint16")
    message = str(info.value)
    assert "frame axis 1 has length 100, which 3 does not divide" in message
    assert "keeping 0:99 on axis 1" in message


def test_bin_frames_needs_one_factor_per_frame_axis():
    with pytest.raises(StageError, match=r"1 factor\(s\), but frames of shape \(4, 4\)"):
        StageChain([bin_frames(2)], (4, 4), "uint16")


@pytest.mark.parametrize(
    ("factors", "options"),
    [((0, 2), {}), ((1.5,), {}), ((), {}), ((2,), {"method": "median"})],
    ids=["zero", "float", "none", "unknown-method"],
)
def test_bin_frames_refuses_bad_arguments(factors, options):
    with pytest.raises(ValueError, match="bin_frames"):
        bin_frames(*factors, **options)


def test_bin_frames_refuses_a_sum_no_integer_holds():
    with pytest.raises(StageError, match="dtype="):
        StageChain([bin_frames(2)], (4,), "uint64")


# ---------------------------------------------------------------------- cast_frames


def test_cast_frames_widening_keeps_values():
    frames = ramp((2, 3), "uint16")
    out = StageChain([cast_frames("float32")], (3,), "uint16")(frames)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, frames)


def test_cast_frames_to_the_same_dtype_does_not_copy():
    frames = ramp((2, 3))
    out = StageChain([cast_frames("uint16")], (3,), "uint16")(frames)
    assert np.shares_memory(out, frames)


@pytest.mark.parametrize(
    ("values", "source", "target", "match"),
    [
        ([5, 70000], "uint32", "uint16", "values from 5 to 70000, outside 0..65535"),
        ([-1, 3], "int16", "uint8", "values from -1 to 3"),
        ([1.5, 300.0], "float64", "uint8", "outside 0..255"),
        ([1.0, np.nan], "float64", "int32", "NaN"),
        ([1.0, 1e300], "float64", "float32", "beyond"),
    ],
    ids=["uint32-uint16", "negative-unsigned", "float-uint8", "nan-int", "float64-float32"],
)
def test_cast_frames_raises_on_values_out_of_range(values, source, target, match):
    chain = StageChain([cast_frames(target)], (2,), source)
    with pytest.raises(StageError, match=match):
        chain(np.array([values], dtype=source))


def test_cast_frames_passes_values_in_range_of_a_narrower_dtype():
    out = StageChain([cast_frames("uint8")], (3,), "uint16")(np.array([[0, 17, 255]], "uint16"))
    assert out.tolist() == [[0, 17, 255]]
    assert out.dtype == np.uint8


@pytest.mark.parametrize(
    ("values", "source", "target", "expected"),
    [
        ([5, 70000], "uint32", "uint16", [5, 65535]),
        ([-7, 3], "int16", "uint8", [0, 3]),
        ([-1e6, 2.7], "float64", "int16", [-32768, 2]),
        ([1e300, -1e300], "float64", "float32", [3.4028234663852886e38, -3.4028234663852886e38]),
        ([1e19, -1e19], "float64", "int64", [2**63 - 1024, -(2**63)]),
    ],
    ids=["uint32-uint16", "negative-unsigned", "float-int16", "float64-float32", "float-int64"],
)
def test_cast_frames_clip_saturates(values, source, target, expected):
    chain = StageChain([cast_frames(target, overflow="clip")], (2,), source)
    out = chain(np.array([values], dtype=source))
    assert out.dtype == np.dtype(target)
    assert out[0].tolist() == expected


def test_cast_frames_clip_refuses_nan_to_integers():
    chain = StageChain([cast_frames("int32", overflow="clip")], (2,), "float32")
    with pytest.raises(StageError, match="NaN"):
        chain(np.array([[np.nan, 1]], dtype="float32"))


def test_cast_frames_wrap_is_numpys_astype():
    frames = np.array([[5, 70000]], dtype="uint32")
    out = StageChain([cast_frames("uint16", overflow="wrap")], (2,), "uint32")(frames)
    np.testing.assert_array_equal(out, frames.astype("uint16"))


def test_cast_frames_refuses_complex_to_real():
    with pytest.raises(StageError, match="imaginary"):
        StageChain([cast_frames("float64")], (2,), "complex128")


def test_cast_frames_refuses_an_unknown_overflow():
    with pytest.raises(ValueError, match="overflow must be"):
        cast_frames("uint8", overflow="saturate")  # type: ignore[arg-type]
