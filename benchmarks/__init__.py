"""featurekube's benchmarks: ``make bench`` runs every ``bench_*`` module here.

Each benchmark measures featurekube side by side with a peer in the same run, writes
one JSON file under ``bench-results/`` and prints a table; ratios, never absolute
thresholds, since these machines are noisy.
"""
