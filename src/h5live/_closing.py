"""The context-manager half of every h5live resource: ``with`` calls ``close()``."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

__all__ = ["ClosingContext"]

T = TypeVar("T", bound="ClosingContext")


class ClosingContext:
    """Mixin: ``__enter__`` returns the object, ``__exit__`` calls its idempotent ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
