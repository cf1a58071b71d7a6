"""`make bench`: modelgate's benchmarks, outside the runtime package (run as `python -m benchmarks` from the
repository root). Each figure is a ratio against a limit or a peer measured in the same run."""
