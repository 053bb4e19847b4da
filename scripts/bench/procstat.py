"""What a server process and its children cost, read from /proc.

CPU is utime+stime (user and system time) summed over the process tree, so a
`--workers 2` server counts its workers too. Peak RSS is VmHWM: the largest process
of the tree (with workers, the largest worker). Writing 5 to clear_refs resets
VmHWM to the current RSS, so each run reports its own peak.
"""

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after it.
    text = (PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive now."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        parents.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(parents.get(pid, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process; 0 once it has gone."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _status_kb(pid: int, key: str) -> int:
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class CpuSnapshot:
    per_process: dict[int, float]

    @classmethod
    def of_tree(cls, root: int) -> "CpuSnapshot":
        return cls({pid: cpu_seconds(pid) for pid in process_tree(root)})

    def seconds_since(self, earlier: "CpuSnapshot") -> float:
        # A process that started in between counts from zero.
        return sum(
            seconds - earlier.per_process.get(pid, 0.0)
            for pid, seconds in self.per_process.items()
        )


def reset_peak_rss(root: int) -> None:
    for pid in process_tree(root):
        # Not ours to reset (not root)? VmHWM then covers the process's whole life.
        with contextlib.suppress(OSError):
            (PROC / str(pid) / "clear_refs").write_text("5")


def peak_rss_mb(root: int) -> float:
    """VmHWM of the largest process in the tree, in MiB."""
    return max(_status_kb(pid, "VmHWM") for pid in process_tree(root)) / 1024
