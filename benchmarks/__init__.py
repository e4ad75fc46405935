"""The benchmark suite of issue 8 (``make bench``): product paths timed against PostgreSQL baselines.

``python -m benchmarks`` builds synthetic trials (``benchmarks.synthetic``) in a database of its own, runs the
benchmarks of ``benchmarks.suite``, prints a table and writes ``var/bench.json``. Not part of ``make test``; the
tests run each benchmark at a tiny scale (tests/benchmarks/) so that it cannot rot.
"""
