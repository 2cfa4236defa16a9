"""Shared helpers for the benchmarks: machine description, statistics, docs/BENCHMARKS.md.

Each benchmark owns one section of docs/BENCHMARKS.md, delimited by HTML comments
(`<!-- bench:NAME:start -->` ... `<!-- bench:NAME:end -->`), and rewrites only that section.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DOC = REPO / "docs" / "BENCHMARKS.md"
VENV_BIN = Path(sys.executable).parent
PHOTOS_SYNC = str(VENV_BIN / "photos-sync")

DOC_HEADER = """# Benchmarks

Measured with the real rclone, real SQLite and a real daemon process, on the machine described
in each section. The scripts live in [bench/](../bench/README.md); `bench/run_all.sh` runs them
all and regenerates this file (each script rewrites only its own section).
"""


def rclone_binary() -> str:
    from photos_sync.system.execute import find_rclone

    return find_rclone(os.environ.get("RCLONE_BINARY") or None)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _disk(path: Path) -> str:
    try:
        out = (
            subprocess.run(["df", "-hT", str(path)], capture_output=True, text=True, check=True)
            .stdout.splitlines()[-1]
            .split()
        )
        device, fstype, size, _used, avail = out[0], out[1], out[2], out[3], out[4]
        rotational = "?"
        name = Path(device).name
        rot = Path(f"/sys/block/{name}/queue/rotational")
        if rot.exists():
            rotational = "HDD" if rot.read_text().strip() == "1" else "SSD/virtual"
        return f"{device} ({fstype}, {size}, {avail} free, {rotational})"
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def rclone_version() -> str:
    try:
        out = subprocess.run(
            [rclone_binary(), "version"], capture_output=True, text=True, check=True
        ).stdout
        return out.splitlines()[0].strip()
    except (OSError, subprocess.CalledProcessError, RuntimeError):
        return "unknown"


def machine(path: Path) -> dict[str, str]:
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "RAM": _mem_total(),
        "Disk (data folder)": _disk(path),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "rclone": rclone_version(),
    }


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def wait_for_low_load(max_wait: float, threshold: float = 1.0) -> str:
    """Wait up to `max_wait` s for the 1-minute load average to drop below `threshold`."""
    start = time.monotonic()
    while os.getloadavg()[0] >= threshold and time.monotonic() - start < max_wait:
        time.sleep(5)
    waited = time.monotonic() - start
    low = os.getloadavg()[0] < threshold
    return f"waited {waited:.0f} s for load < {threshold} ({'reached' if low else 'not reached'})"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, round(pct / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def spread(values: Sequence[float], unit: str = "s", digits: int = 2) -> str:
    return f"{min(values):.{digits}f}–{max(values):.{digits}f} {unit}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_block(info: dict[str, str], extra: dict[str, str]) -> str:
    rows = [(k, v) for k, v in {**info, **extra}.items()]
    return table(("", ""), rows)


def update_doc(name: str, body: str) -> None:
    """Replace (or append) the section `name` of docs/BENCHMARKS.md with `body`."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else DOC_HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _m: block, text)
        if pattern.search(text)
        else (text.rstrip("\n") + "\n\n" + block + "\n")
    )
    DOC.write_text(text if text.endswith("\n") else text + "\n")


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def byte_compile() -> None:
    """Write the .pyc files of photos-sync as `pip install` of a wheel does: the editable
    install of a checkout has none, and with PYTHONDONTWRITEBYTECODE set (as on the shared
    machines) every `photos-sync` start would compile the modules changed since, a start-up
    cost no installed copy pays."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "photos_sync"), str(REPO / "daemon")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any BACKUP_*, PHOTOS_SYNC_* or RCLONE_* setting,
    plus `extra` (so an operator's own configuration cannot leak into a measurement)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BACKUP_", "PHOTOS_SYNC_", "RCLONE_", "NOTIFY_SOCKET"))
    }
    env.update(extra)
    return env


def run_child(script: str, *args: str) -> dict[str, Any]:
    """Run `script --child ARGS` in a fresh interpreter (from the repository root) and
    return the JSON object its last line of output holds."""
    output = subprocess.run(
        [sys.executable, script, "--child", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def vm_hwm_mib() -> float | None:
    """This process's peak RSS (VmHWM), None without /proc (macOS). Not ru_maxrss: Linux
    carries that over an exec, so a child would report its parent's size if larger."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
