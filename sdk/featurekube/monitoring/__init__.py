"""Monitoring of a view's values: per-window statistics and drift against a reference.

- :mod:`~featurekube.monitoring.stats` (pure): what a window's statistics are — the
  columns of the statistics table, the exact quantile definition, top values.
- :mod:`~featurekube.monitoring.drift` (pure): reference profiles (bins cut at a
  reference's deciles, or its top values) and the population stability index (PSI).
- :mod:`~featurekube.monitoring.profiling`: computes statistics and reference profiles
  with DuckDB over Arrow data (no other I/O).
- :mod:`~featurekube.monitoring.stats_store`: a view version's statistics and reference
  tables (Delta, beside its offline table), and :func:`read_statistics`, their public
  reader.
- :mod:`~featurekube.monitoring.references`: finds or computes the profile a view's
  ``spec.monitoring.drift.reference`` names, and saves a training pull's.

See docs/monitoring.md. Importing this package loads no engine.
"""
