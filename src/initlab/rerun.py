"""The same command again: the unfinished run or sweep it left behind, and how to name it.

A run's or a sweep's directory is named after the moment it started
(``outputs/runs/<date>/<time>_<overrides>``), so the same command run again would start a new
one. Before it does, ``find_unfinished`` looks among the directories its template makes at other
moments (``pattern``: the template with each ``${now:...}`` a wildcard) for the newest one that

- holds the same command: Hydra's record of its overrides lists the same overrides, in any order
  (a run's ``<output_subdir>/overrides.yaml``, a sweep's ``multirun.yaml``);
- is unfinished: a run without a finished record (``ok`` or ``diverged``), a sweep with a job
  without one;
- is in no process's hands: nobody holds its lock (``initlab.rundir``).

The command then continues there, as it would in a directory named with ``hydra.run.dir``.
``resume_command`` is the other way back: the command line that names the directory, quoted for
a shell and for Hydra, printed when a run or sweep stops. No Hydra, no torch.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from initlab.results import RESULTS_FILE, classify
from initlab.rundir import RunDir

MULTIRUN_YAML = "multirun.yaml"  # Hydra's basic sweeper: the sweep's config, in its dir
OVERRIDES_YAML = "overrides.yaml"  # Hydra: a run's command-line overrides, in its output_subdir
FINISHED = ("ok", "diverged")  # a record the same command skips


def sweep_overrides(sweep_dir: Path) -> dict[str, list[str] | None] | None:
    """The overrides Hydra recorded for the sweep in ``sweep_dir`` (its multirun.yaml), by kind:
    ``task`` (the command line's settings) and ``hydra`` (Hydra's own: a launcher, ...), None
    for a kind it lacks; None when it holds no readable record."""
    try:
        text = (sweep_dir / MULTIRUN_YAML).read_text(encoding="utf-8")
        found: Any = ((yaml.safe_load(text) or {}).get("hydra") or {}).get("overrides") or {}
        kinds = {kind: found.get(kind) for kind in ("task", "hydra")}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return None
    if not all(v is None or _strings(v) for v in kinds.values()):
        return None
    return kinds


def recorded_overrides(path: Path, output_subdir: str | None, multirun: bool) -> list[str] | None:
    """The task overrides Hydra recorded for the run or sweep in ``path`` (None: no record)."""
    if multirun:
        return (sweep_overrides(path) or {}).get("task")
    if not output_subdir:
        return None
    try:
        found = yaml.safe_load((path / output_subdir / OVERRIDES_YAML).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return found if _strings(found) else None


def _strings(found: Any) -> bool:
    return isinstance(found, list) and all(isinstance(o, str) for o in found)


def finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run (its record says ok or diverged)."""
    return classify(run_dir / RESULTS_FILE)[0] in FINISHED


def find_unfinished(
    pattern: str,
    overrides: Sequence[str],
    jobs: Sequence[str] | None,
    output_subdir: str | None,
    exclude: Path | None = None,
) -> Path | None:
    """The newest directory matching ``pattern`` (a glob, relative or absolute) that holds the
    same command unfinished and is not in use; None when there is none.

    ``jobs``: a sweep's job directories (names below the sweep dir); None for a single run.
    ``exclude``: the directory the command would make now (not an earlier one)."""
    root, glob = _split(pattern)
    same = sorted(overrides)
    for path in sorted(root.glob(glob), reverse=True):  # names start with the time: newest first
        if not path.is_dir() or (exclude is not None and path == exclude):
            continue
        recorded = recorded_overrides(path, output_subdir, jobs is not None)
        if recorded is None or sorted(recorded) != same:
            continue
        done = finished(path) if jobs is None else all(finished(path / job) for job in jobs)
        if not done and RunDir(path).holder() is None:
            return path
    return None


def _split(pattern: str) -> tuple[Path, str]:
    """A glob as the directory it starts from (the part without wildcards) and the rest."""
    parts = Path(pattern).parts
    fixed = 0
    while fixed < len(parts) - 1 and not re.search(r"[*?\[]", parts[fixed]):
        fixed += 1
    root = Path(*parts[:fixed]) if fixed else Path(".")
    return root, str(Path(*parts[fixed:]))


# Characters a shell reads as themselves in an unquoted word
_PLAIN = re.compile(r"[\w@%+=:,./-]+")


def shell_word(arg: str) -> str:
    """``arg`` as a shell reads it back: unchanged when plain; in double quotes when that
    suffices (readable: ``"hydra.run.dir='outputs/...'"``); else in single quotes."""
    if _PLAIN.fullmatch(arg):
        return arg
    if not re.search(r'["$`\\!]', arg):
        return f'"{arg}"'
    return shlex.quote(arg)


def quoted_override(key: str, value: str) -> str:
    """``key='value'`` as Hydra's override grammar reads it back as ``value`` whatever it holds
    (``=``, ``,``, spaces, quotes, backslashes)."""
    # Hydra's escapes: a quote is \', and backslashes count only before a quote (or the end)
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"{key}='{escaped}'"


def resume_command(argv: Sequence[str], pin: str) -> str:
    """The command line ``argv`` (the interpreter and the script, as typed) with ``pin`` (the
    override naming its directory, quoted for Hydra) in place of any it had, for a shell."""
    key = pin.split("=", 1)[0]
    kept = [a for a in argv if a.split("=", 1)[0].lstrip("+~") != key]
    return " ".join(shell_word(a) for a in [*kept, pin])
