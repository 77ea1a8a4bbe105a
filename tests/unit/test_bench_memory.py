"""Benchmarks measure a subject's own peak memory, never the harness's that started it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from benchmarks import _memory

REPO = Path(__file__).resolve().parents[2]


PARENT_HOLDING_1_GIB = textwrap.dedent(
    """
    import json, subprocess, sys
    from benchmarks import _memory

    # 1 GiB written, so resident: the harness's size when it starts a subject.
    held = b"\\x01" * (1 << 30)
    worker = (
        "import json, resource\\n"
        "from benchmarks import _memory\\n"
        "print(json.dumps({'own': _memory.own_peak_mib(),"
        " 'rusage': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    child = subprocess.Popen([sys.executable, "-c", worker], stdout=subprocess.PIPE, text=True)
    with _memory.TreeWatch(child.pid, interval=0.01) as memory:
        out, _ = child.communicate(timeout=30)
    found = json.loads(out)
    memory.record(child.pid, found["own"])
    found["watched"] = memory.total_mib()
    found["held"] = len(held)
    print(json.dumps(found))
    """
)


@pytest.mark.timeout(60)  # writing 1 GiB takes seconds on a loaded 2-core machine
def test_a_worker_started_from_a_parent_holding_1_gib_reports_well_under_1_gib() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PARENT_HOLDING_1_GIB],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=50,
        check=True,
    )
    found = json.loads(done.stdout)

    assert found["own"] < 256
    assert found["watched"] < 256
    # What the benchmarks used to report: Linux seeds ru_maxrss from the parent's.
    assert found["rusage"] >= 1024


PARENT_OF_A_CHILD_HOLDING_64_MIB = textwrap.dedent(
    """
    import subprocess, sys
    child = "import time; held = b'\\x01' * (64 << 20); time.sleep(1.0)"
    subprocess.run([sys.executable, "-c", child], check=True)
    """
)


def test_the_peak_is_summed_over_the_tree_and_kept_after_a_process_exits() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT_OF_A_CHILD_HOLDING_64_MIB])
    with _memory.TreeWatch(parent.pid, interval=0.02) as memory:
        parent.wait(timeout=8)

    peaks = memory.peaks
    assert len(peaks) == 2
    assert max(p.peak_mib for p in peaks) >= 64
    assert memory.total_mib() == pytest.approx(sum(p.peak_mib for p in peaks))


PARENT_OF_TWO_CHILDREN_ONE_AFTER_THE_OTHER = textwrap.dedent(
    """
    import subprocess, sys
    child = "import time; held = b'\\x01' * (96 << 20); time.sleep(0.8)"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", child], check=True)
    """
)


def test_processes_that_never_ran_together_are_not_summed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT_OF_TWO_CHILDREN_ONE_AFTER_THE_OTHER])
    with _memory.TreeWatch(parent.pid, interval=0.02) as memory:
        parent.wait(timeout=8)

    children = [peak for peak in memory.peaks if peak.pid != parent.pid]
    assert len(children) == 2
    assert all(child.peak_mib >= 96 for child in children)
    assert memory.total_mib() < sum(peak.peak_mib for peak in memory.peaks) - 90
    assert len(memory.at_peak()) == 2


PARENT_OF_A_CHILD_SLOW_TO_EXEC = textwrap.dedent(
    """
    import os, sys, time
    held = b"\\x01" * (200 << 20)
    child = os.fork()
    if child == 0:
        # Between fork and exec the child's page tables are a copy of its parent's.
        time.sleep(0.3)
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(1.0)"])
    os.waitpid(child, 0)
    """
)


def test_a_child_between_fork_and_exec_is_not_counted_as_holding_its_parent_memory() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT_OF_A_CHILD_SLOW_TO_EXEC])
    with _memory.TreeWatch(parent.pid, interval=0.02) as memory:
        parent.wait(timeout=8)

    by_pid = {peak.pid: peak.peak_mib for peak in memory.peaks}
    assert by_pid.pop(parent.pid) >= 200
    (child,) = by_pid.values()
    assert child < 100


def test_a_figure_a_process_gives_of_itself_raises_its_peak_never_lowers_it() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    with _memory.TreeWatch(child.pid, interval=0.02) as memory:
        child.wait(timeout=8)
    sampled = memory.total_mib()

    memory.record(child.pid, 1.0)
    assert memory.total_mib() == sampled
    memory.record(child.pid, sampled + 100)
    assert memory.total_mib() == pytest.approx(sampled + 100)
    assert len(memory.peaks) == 1


def test_a_watch_of_a_process_already_gone_reports_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=8)

    with _memory.TreeWatch(child.pid) as memory:
        pass

    assert memory.peaks == []
    assert memory.total_mib() == 0.0


def test_own_peak_is_at_least_what_this_process_holds_now() -> None:
    now = _memory.rss_mib(os.getpid())

    assert now is not None
    assert _memory.own_peak_mib() >= now > 1


# --- pure parts -----------------------------------------------------------------------


def test_stat_fields_are_counted_from_the_last_parenthesis_of_the_name() -> None:
    text = "4242 (weird) name (x)) S 17 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 3 0 123456 0"

    assert _memory.parse_stat(text) == (17, 123456)


def test_status_sizes_are_read_in_kib() -> None:
    fields = _memory.parse_status("Name:\tjava\nVmHWM:\t  2097152 kB\nVmRSS:\t 1024 kB\n")

    assert fields["Name"] == "java"
    assert _memory.kib(fields["VmHWM"]) == 2097152
    with pytest.raises(ValueError, match="unexpected unit"):
        _memory.kib("3 MB")


def test_descendants_follow_every_generation_and_nothing_else() -> None:
    parents = {10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 21: 20}

    assert _memory.descendants(10, parents) == [11, 12, 13]
    assert _memory.descendants(12, parents) == []


def test_peaks_are_summed_in_total_and_by_kind() -> None:
    peaks = [
        _memory.ProcessPeak(1, "python3.11", 300.0),
        _memory.ProcessPeak(2, "java", 1500.0),
        _memory.ProcessPeak(3, "python3.11", 50.0),
    ]

    assert _memory.sum_peaks(peaks, _memory.jvm_or_python) == {
        "total": 1850.0,
        "Python": 350.0,
        "JVM": 1500.0,
    }
    assert _memory.sum_peaks([]) == {"total": 0.0}
