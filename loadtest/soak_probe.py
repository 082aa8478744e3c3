"""Reading a process's resources for the soak: resident memory and open file descriptors.

Responsibility: the I/O half of ``loadtest.soak``: read ``/proc/<pid>/status`` (``VmRSS``) and
count ``/proc/<pid>/fd``. It must not interpret the numbers (``loadtest.soak`` does). Where
there is no ``/proc`` (macOS, Windows) or the process is gone, a reading is None and the report
shows "-": the soak still measures latency.

Theory of operation: ``VmRSS`` is the kernel's count of resident pages (proc(5)), in kB;
``/proc/<pid>/fd`` holds one entry per open descriptor (sockets, files, the event loop's
epoll and pipes). Both are cheap to read once an interval.
"""

from __future__ import annotations

import os
from pathlib import Path

from loadtest.soak import ResourceReading


def _proc(pid: int | None) -> Path:
    return Path("/proc") / ("self" if pid is None else str(pid))


def rss_bytes(pid: int | None = None) -> int | None:
    """The resident set size of ``pid`` (this process when None), in bytes."""
    try:
        text = (_proc(pid) / "status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            fields = line.split()
            # proc(5): "VmRSS:    123456 kB"
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1]) * 1024
    return None


def open_fds(pid: int | None = None) -> int | None:
    """How many file descriptors ``pid`` (this process when None) has open."""
    try:
        entries = os.listdir(_proc(pid) / "fd")
    except OSError:
        return None
    # Listing /proc/self/fd opens one descriptor of its own for the directory.
    return len(entries) - 1 if pid is None else len(entries)


def read(at: float, pid: int | None = None) -> ResourceReading:
    """One reading, ``at`` seconds into the measured run."""
    return ResourceReading(at=at, rss_bytes=rss_bytes(pid), open_fds=open_fds(pid))
