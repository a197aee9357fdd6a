"""The report of a sweep: summary.csv, summary.md and plots, written into the sweep directory.

    python scripts/report.py outputs/multirun/<date>/<time>
    python scripts/report.py <sweep dir> --out <dir>     # the report into <dir> instead

Reads every results.json below the directory (a sweep, a study, or all of outputs/). The same
report is written automatically at the end of every multirun (initlab.hydra_callbacks).
A results.json that is not a trustworthy record (not a regular file, not this initlab's schema,
a field of the wrong type) is listed as unreadable, with why, and never aggregated. A report
that cannot be written (a read-only sweep dir) is one line and exit status 2: --out writes it
elsewhere. A thin command line over initlab.report.write_report.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from initlab.report import PROPAGATION_FILE, write_report
from initlab.results import find_results

USAGE = "usage: python scripts/report.py <sweep dir> [--out <dir>]"


def main(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        print(f"{USAGE}\n\n{(__doc__ or '').strip()}")  # what it reads and writes
        return 0
    out = None
    if len(args) == 3 and args[1] == "--out":
        args, out = args[:1], Path(args[2])
    if len(args) != 1 or args[0].startswith("-"):
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
    target = (out or directory).resolve()
    try:
        summary = write_report(directory, out_dir=out)
    except OSError as exc:  # a read-only sweep dir, a full disk: nothing to show but the cause
        print(
            f"initlab: error: cannot write the report into {target}: {exc.strerror or exc}; "
            f"write it elsewhere with: python scripts/report.py {directory} --out <writable dir>",
            file=sys.stderr,
        )
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
