"""Benchmarks: each prints its measurements and, on its last line, a ratio against a reference
measured in the same run on the same machine (timings alone mean little on shared hardware)."""
