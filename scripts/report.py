"""The report of a sweep: summary.csv, summary.md and plots, written into the sweep directory.

    python scripts/report.py outputs/multirun/<date>/<time>

Reads every results.json below the directory (a sweep, a study, or all of outputs/). The same
report is written automatically at the end of every multirun (initlab.hydra_callbacks).
A thin command line over initlab.report.write_report.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from initlab.report import PROPAGATION_FILE, write_report
from initlab.results import find_results

USAGE = "usage: python scripts/report.py <sweep dir>"


def main(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        print(f"{USAGE}\n\n{(__doc__ or '').strip()}")  # what it reads and writes
        return 0
    if len(args) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    directory = Path(args[0])
    if not directory.is_dir():
        print(f"initlab: {directory} is not a directory", file=sys.stderr)
        return 2
    if not find_results(directory) and not any(directory.rglob(PROPAGATION_FILE)):
        print(
            f"initlab: no results.json (or {PROPAGATION_FILE}) below {directory}: "
            "nothing to report",
            file=sys.stderr,
        )
        return 2
    summary = write_report(directory)
    print(summary)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
