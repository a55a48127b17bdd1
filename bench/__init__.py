"""Benchmarks of Slipway against the real platform (`slipway up`), run with `make bench`."""
