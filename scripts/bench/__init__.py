"""The pieces of scripts/bench.py, the benchmark (see its docstring)."""
