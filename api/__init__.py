"""The retouch web service: persistent batch jobs over the same tasks and reports as the CLI."""
