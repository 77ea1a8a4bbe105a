"""featurekube's benchmarks: ``make bench`` runs every ``bench_*`` module here.

Each benchmark measures featurekube side by side with a peer in the same run, writes
one JSON file under ``bench-results/`` and prints a table; ratios, never absolute
thresholds, since these machines are noisy.

Every figure of peak memory is a subject's own, measured one way for all
(``_memory``: the high-water marks of its process tree). Every report carries its
provenance (``_provenance``: the commit, the versions of featurekube and of the peers,
the machine, the load before, during and after the run); a run on a machine whose
load went above its core count is marked LOADED in the table.
"""
