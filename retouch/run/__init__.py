"""Running analyses: the one path the command line, batch runs, the web service and the benchmarks share."""
