"""Pin the public names: adding or removing one is a decision, not an accident."""

from __future__ import annotations

import h5live
import h5live.errors
import h5live.testing


def test_h5live_all():
    assert sorted(h5live.__all__) == sorted(
        [
            "KNOWN_LAYOUTS",
            "FollowPolicy",
            "KeyFollower",
            "Layout",
            "SourceSpec",
            "StopReason",
            "__version__",
            "errors",
            "open_source",
        ]
    )
    for name in h5live.__all__:
        assert hasattr(h5live, name)


def test_errors_all():
    assert sorted(h5live.errors.__all__) == sorted(
        [
            "DatasetNotFoundError",
            "FinishedDatasetError",
            "FollowTimeout",
            "H5LiveError",
            "H5LiveWarning",
            "KeyDatasetError",
            "KeyRegressionError",
            "KeyRegressionWarning",
            "SourceNotReadyError",
        ]
    )


def test_errors_subclass_the_library_base_and_a_builtin():
    from h5live import errors

    assert issubclass(errors.SourceNotReadyError, (errors.H5LiveError, OSError))
    assert issubclass(errors.DatasetNotFoundError, KeyError)
    assert issubclass(errors.KeyDatasetError, ValueError)
    assert issubclass(errors.FinishedDatasetError, ValueError)
    assert issubclass(errors.FollowTimeout, TimeoutError)
    assert issubclass(errors.KeyRegressionWarning, (errors.H5LiveWarning, UserWarning))
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, (errors.H5LiveError, errors.H5LiveWarning))


def test_dataset_not_found_message_is_not_quoted():
    assert str(h5live.errors.DatasetNotFoundError("a 'b' c")) == "a 'b' c"


def test_testing_all():
    assert sorted(h5live.testing.__all__) == sorted(
        [
            "CRASH_EXIT_CODE",
            "FakeClock",
            "SimulatedWriter",
            "WriterConfig",
            "WriterProcess",
            "frame_values",
        ]
    )
