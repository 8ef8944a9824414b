"""sluice's end-to-end benchmarks, one module per concern; bench/bench.py is the command line."""
