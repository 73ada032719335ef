"""Resident memory of this process, and its peak during a call (sampled every millisecond)."""

from __future__ import annotations

import os
import threading
import time


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakSampler(threading.Thread):
    """Samples the resident set every millisecond until stopped; ``peak`` is the largest seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_mb()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.001)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return max(self.peak, rss_mb())
