"""Entry point of ``python -m benchmarks``; the work is in :mod:`benchmarks._cli`."""

from benchmarks._cli import main

raise SystemExit(main())
