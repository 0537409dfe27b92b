"""The load benchmark `medchain bench` runs: a local cluster driven by a
workload of signed transactions, and the same pipeline unreplicated as its
baseline. The longer experiments in the repository's benchmarks/ build on
these; they are not installed."""
