"""Run a simulated writer process: ``python -m h5live.testing PATH --config JSON``."""

from h5live.testing._process import main

raise SystemExit(main())
