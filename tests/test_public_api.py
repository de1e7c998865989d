"""Pin the public names: adding or removing one is a decision, not an accident."""

from __future__ import annotations

import subprocess
import sys

import pytest

import h5live
import h5live.chunk_utils
import h5live.compat
import h5live.errors
import h5live.testing
import h5live.utils


def test_h5live_all():
    assert sorted(h5live.__all__) == sorted(
        [
            "KNOWN_LAYOUTS",
            "ChunkSource",
            "ConversionOptions",
            "ConversionResult",
            "DataSource",
            "FollowPolicy",
            "FrameReader",
            "KeyFollower",
            "Layout",
            "LiveDataChunkIterator",
            "LiveHDF5IO",
            "LiveNWBHDF5IO",
            "RowKeyFollower",
            "SliceDict",
            "SourceSpec",
            "Stage",
            "StageChain",
            "StopReason",
            "__version__",
            "bin_frames",
            "cast_frames",
            "chunk_utils",
            "copy_live",
            "crop_frames",
            "errors",
            "open_source",
            "sum_frames",
            "to_nwb",
            "utils",
        ]
    )
    for name in h5live.__all__:
        assert hasattr(h5live, name)


def test_following_and_reading_start_without_hdmf_and_the_rest_comes_on_first_use():
    # A writer, a beamline script or `h5live follow` imports h5live without the write path:
    # hdmf brings pandas and zarr, two thirds of the import time.
    code = (
        "import sys, h5live, h5live.testing._writer, h5live._cli\n"
        "heavy = sorted(m for m in ('hdmf', 'pandas', 'pynwb', 'zarr') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "from h5live import LiveDataChunkIterator, to_nwb\n"
        "import hdmf.data_utils\n"
        "assert issubclass(LiveDataChunkIterator, hdmf.data_utils.GenericDataChunkIterator)\n"
        "assert to_nwb.__module__ == 'h5live._write.nwb' and 'pynwb' not in sys.modules\n"
        "assert h5live.LiveNWBHDF5IO.__module__ == 'h5live._write.live_nwb'\n"
        "assert h5live.__version__ and set(h5live.__all__) <= set(dir(h5live))\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        h5live.NoSuchThing  # noqa: B018


def test_errors_all():
    assert sorted(h5live.errors.__all__) == sorted(
        [
            "BackendConfigurationError",
            "DatasetNotFoundError",
            "DirectChunkError",
            "DirectWriteError",
            "DuplicateHandleError",
            "FinishedDatasetError",
            "FollowTimeout",
            "FrameIndexError",
            "FrameReadError",
            "H5LiveError",
            "H5LiveWarning",
            "IteratorOptionError",
            "KeyDatasetError",
            "KeyRegressionError",
            "KeyRegressionWarning",
            "NWBSourceError",
            "OutputError",
            "OutputExistsError",
            "ScanShapeError",
            "SourceNotReadyError",
            "StageError",
        ]
    )


def test_errors_subclass_the_library_base_and_a_builtin():
    from h5live import errors

    assert issubclass(errors.SourceNotReadyError, (errors.H5LiveError, OSError))
    assert issubclass(errors.DatasetNotFoundError, KeyError)
    assert issubclass(errors.KeyDatasetError, ValueError)
    assert issubclass(errors.FinishedDatasetError, ValueError)
    assert issubclass(errors.FollowTimeout, TimeoutError)
    assert issubclass(errors.DuplicateHandleError, RuntimeError)
    assert issubclass(errors.DirectWriteError, ValueError)
    assert issubclass(errors.KeyRegressionWarning, (errors.H5LiveWarning, UserWarning))
    # hdmf's GenericDataChunkIterator checks the same options with assert
    assert issubclass(errors.IteratorOptionError, ValueError)
    assert issubclass(errors.IteratorOptionError, AssertionError)
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, (errors.H5LiveError, errors.H5LiveWarning))


def test_dataset_not_found_message_is_not_quoted():
    assert str(h5live.errors.DatasetNotFoundError("a 'b' c")) == "a 'b' c"


def test_testing_all():
    assert sorted(h5live.testing.__all__) == sorted(
        [
            "CRASH_EXIT_CODE",
            "AcquisitionConfig",
            "FakeClock",
            "MultiFileAcquisition",
            "ProcessGroup",
            "SimulatedWriter",
            "StallError",
            "WriterConfig",
            "WriterProcess",
            "frame_values",
            "wait_for_progress",
        ]
    )


def test_swmr_tools_modules_all():
    assert h5live.utils.__all__ == [
        "append_data",
        "check_file_readable",
        "convert_stack_to_grid",
        "copy_nexus_axes",
        "create_dataset",
        "create_nxdata",
        "create_nxentry",
        "get_position",
        "get_position_snake",
        "get_position_snake_row",
        "get_row_slice",
        "refresh_dataset",
    ]
    assert h5live.chunk_utils.__all__ == [
        "ChunkSliceCollection",
        "SliceInOut",
        "SliceSize",
        "get_output_chunk_shape",
        "get_slice_structure",
        "write_data",
    ]
    assert h5live.compat.__all__ == ["Follower", "FrameGrabber"]
