from __future__ import annotations

from featurekube_operator import metrics


def test_each_outcome_counts_once_and_the_memory_of_them_stays_bounded() -> None:
    counter = metrics.Metrics()

    assert counter.count_run_once("rides/v-v1-0//1/ok")
    assert not counter.count_run_once("rides/v-v1-0//1/ok")
    for i in range(metrics.COUNTED_KEYS + 10):
        counter.count_run_once(f"rides/v-v1-{i}//1/ok")

    assert len(counter._counted) == metrics.COUNTED_KEYS
