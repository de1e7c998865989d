"""Run :class:`h5live.dranspose.H5LiveIngester`: ``python -m h5live.dranspose``.

Configured by the environment as every dranspose service is (``REDIS_URL``, ``INGESTER_URL``,
``INGESTER_NAME``, ``INGESTER_STREAMS``) plus ``H5LIVE_DRANSPOSE_CONFIG``; ``--config`` and
``--streams`` override the last two. Stops on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from h5live.dranspose.config import CONFIG_ENV, load_config


async def _serve(config: str | None, streams: list[str] | None) -> None:
    from h5live.dranspose.ingester import H5LiveIngester, H5LiveIngesterSettings

    loaded = load_config(config)
    overrides = {}
    if streams is not None:
        overrides["ingester_streams"] = streams
    elif "INGESTER_STREAMS" not in os.environ:
        overrides["ingester_streams"] = loaded.names
    ingester = H5LiveIngester(H5LiveIngesterSettings(**overrides), config=loaded)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    task = asyncio.create_task(ingester.run())
    await stopped.wait()
    await ingester.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 once stopped, 1 on a configuration error)."""
    parser = argparse.ArgumentParser(prog="python -m h5live.dranspose", description=__doc__)
    parser.add_argument("--config", help=f"JSON/YAML file or JSON text (default: ${CONFIG_ENV})")
    parser.add_argument("--streams", nargs="+", help="streams to serve (default: all)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    try:
        asyncio.run(_serve(args.config, args.streams))
    except ValueError as exc:
        print(f"h5live.dranspose: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
