"""Running analyses: the one path the command line, batch runs, the web service and the benchmarks share.

- :mod:`retouch.run.pipeline`: the detectors and their fusion, or a paired comparison, on decoded images.
- :mod:`retouch.run.tasks`: one analysis or comparison from files to a finished report folder.
- :mod:`retouch.run.item`: one item of a batch or of a web-service job, as a worker runs it.
- :mod:`retouch.run.manifest`: the lists of items people write, and the one rule that names an item.
- :mod:`retouch.run.batch`: many items, resumable, recorded in ``results.jsonl`` and ``summary.csv``.
- :mod:`retouch.run.executor`: local worker processes or a Dask cluster.
- :mod:`retouch.run.checks`: what a request must satisfy before any work starts.
"""
