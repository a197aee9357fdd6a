"""What a job needs before it runs, checked without running it (no Hydra: ``initlab.cli`` calls
these for every job of a command line, ``initlab.run`` for itself).

- its output dir: creatable, no path component over 255 bytes, and, when it already holds a run,
  that run's fingerprint (``initlab.run.previous_run``: a different configuration is refused);
- its data: the MNIST files that are there are intact; missing ones can be fetched;
- the machine: the optimizer as torch builds it, the Trainer as Lightning builds it, and whether
  the model fits in the device's memory.

Each refusal is ``BadInput`` (or the error of the module that refuses), one line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from initlab.errors import BadInput
from initlab.paths import MAX_NAME_BYTES, long_components


def one_line(text: str) -> str:
    """``text`` as one line: its non-empty lines joined, up to Hydra's and OmegaConf's detail
    lines (``full_key: ...``) that repeat what the first says."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    kept = []
    for ln in lines:
        if ln.startswith(("full_key", "object_type", "Set the environment", "Config search")):
            break
        kept.append(ln)
    return " ".join(kept) or str(text)


def once(seen: set[str], kind: str, part: Any, fn: Callable[[Any], Any]) -> None:
    """Run ``fn(part)`` once per distinct ``part`` (the jobs of a sweep share most of theirs)."""
    key = kind + json.dumps(part, sort_keys=True, default=str)
    if key not in seen:
        seen.add(key)
        fn(part)


# -- output dirs ---------------------------------------------------------------------------------
def _existing_ancestor(path: Path) -> Path:
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    return probe


def _can_create(path: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=_existing_ancestor(path)):
            return True
    except OSError:
        return False


# Room a run needs on its disk beyond its checkpoints (event files, logs, results.json)
LOG_SPACE = 2**20


def check_output_dir(path: Path, creatable: bool = True) -> None:
    """The dir a run or sweep writes into: given, each of its names within a filesystem's
    limit, not the launch dir (nor above it), not a dangling link, not a file, not held by
    another process, and (``creatable``) creatable or existing and writable."""
    if str(path).strip() in ("", "."):
        raise BadInput(
            f"output directory {str(path)!r} is the directory you launch from: give "
            "hydra.run.dir / hydra.sweep.dir a directory of its own (outputs/... by default)"
        )
    too_long = long_components(path)
    if too_long:
        name = too_long[0]
        raise BadInput(
            f"output directory {path} has a name of {len(name.encode())} bytes ({name[:40]}...): "
            f"a filesystem allows at most {MAX_NAME_BYTES}; choose a shorter hydra.run.dir / "
            "hydra.sweep.dir"
        )
    where = Path(os.path.abspath(path))  # normalized: "x/.." is x's parent
    launch = Path(os.path.abspath(Path.cwd()))
    if where == launch or where in launch.parents:
        raise BadInput(
            f"output directory {path} is the directory you launch from ({launch}) or above "
            "it: a run writes results, checkpoints and logs into its own directory; choose "
            "another hydra.run.dir / hydra.sweep.dir"
        )
    for link in (where, *where.parents):
        if link.is_symlink() and not link.exists():
            raise BadInput(
                f"output directory {path}: {link} is a link to {os.readlink(link)}, which does "
                "not exist: create its target, or choose another hydra.run.dir / hydra.sweep.dir"
            )
    if where.exists() and not where.is_dir():
        raise BadInput(f"output directory {path} is a file, not a directory")
    _check_run_files(where)
    from initlab.rundir import RunDir, describe_holder

    holder = RunDir(path).holder() if where.is_dir() else None
    if holder is not None:
        raise BadInput(
            f"{path} is in use by {describe_holder(holder)}: wait for it to end, or choose "
            "another output dir (hydra.run.dir=... or hydra.sweep.dir=...)"
        )
    if creatable and not _can_create(path):
        raise BadInput(f"output directory {path} cannot be created or written")


def _check_run_files(where: Path) -> None:
    """What a run writes in its dir must be writable there: results.json (and the csv
    logger's files) files or absent, checkpoints/ a directory or absent."""
    from initlab.results import RESULTS_FILE, file_kind
    from initlab.rundir import CHECKPOINT, HPARAMS_YAML, METRICS_CSV

    for name in (RESULTS_FILE, METRICS_CSV, HPARAMS_YAML):
        path = where / name
        if os.path.lexists(path) and (kind := file_kind(path)) is not None:
            raise BadInput(f"{path} is {kind}, where the run writes a file: move it away")
    folder = where / CHECKPOINT.parent
    if os.path.lexists(folder) and not folder.is_dir():
        raise BadInput(f"{folder} is not a directory, where the run keeps its checkpoints: "
                       "move it away")  # fmt: skip


def check_space(path: Path, cfg: Mapping[str, Any]) -> None:
    """The disk of ``path`` has room for the run (a disk full before the run starts): three
    checkpoints at the peak of a save (the new one is written before the one it replaces and
    its ``.prev`` go), less those the run dir holds already, and its logs."""
    one = checkpoint_bytes(cfg)
    held = 0
    if (path / "checkpoints").is_dir():
        held = sum(
            p.stat().st_size
            for p in (path / "checkpoints").glob("last.ckpt*")
            if p.is_file() and not p.is_symlink()
        )
    need = max(0, 3 * one - held) + LOG_SPACE
    free = shutil.disk_usage(_existing_ancestor(path)).free
    if free < need:
        raise BadInput(
            f"output directory {path} is on a disk with {free / 2**20:.1f} MiB free, and "
            f"the run needs about {need / 2**20:.0f} MiB (checkpoints of {one / 2**20:.1f} MiB "
            "and logs): free space, or choose another hydra.run.dir / hydra.sweep.dir"
        )


def checkpoint_bytes(cfg: Mapping[str, Any]) -> int:
    """About the size of one checkpoint: the weights and the optimizer's state (a momentum
    buffer; two moments for an optimizer with ``betas``), float32."""
    from initlab.mlp import linear_shapes, resolve_hidden_sizes

    m = cfg["model"]
    hidden = resolve_hidden_sizes(m["depth"], m["width"], m["hidden_sizes"])
    shapes = linear_shapes(
        m["input_size"], hidden, m["num_classes"], m["residual"], m["branch_layers"]
    )
    params = sum((a + 1) * b for a, b in shapes)
    optimizer = cfg["optimizer"]
    moments = 2 if "betas" in optimizer or "Adam" in str(optimizer.get("_target_")) else 1
    return 4 * params * (1 + moments)


def check_previous_run(cfg: Mapping[str, Any], out: Path, identities: dict[str, Any]) -> None:
    """A dir that holds a run must hold this one (its fingerprint), or the command is refused.
    ``identities`` caches the dataset identity per data config."""
    if not ((out / "results.json").exists() or (out / "checkpoints").is_dir()):
        return
    task = {k: v for k, v in cfg.items() if k != "hydra"}
    if task.get("force"):
        return
    from initlab import fingerprint as fp
    from initlab.run import previous_run
    from initlab.schedule import schedule_of

    key = json.dumps(task["data"], sort_keys=True, default=str)
    if key not in identities:
        identities[key] = _dataset_identity(task["data"], task)
    identity = identities[key]
    budget = schedule_of(task, identity["train"]).total_steps if identity else None
    asked = fp.fingerprint(task, identity, budget)
    previous_run(out, asked, repair=False, dataset=identity is not None)


def _dataset_identity(data: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the run would read, as its data module states it; None when only the run can tell
    (MNIST absent and to be downloaded)."""
    from initlab.mnist_files import mnist_present
    from initlab.run import data_module

    if data["name"] == "mnist" and data["download"] and not mnist_present(data["root"]):
        return None
    quiet = {**cfg, "data": {**data, "download": False}}
    with warnings.catch_warnings(), _quiet_logs("initlab.data"):
        warnings.simplefilter("ignore")
        dm = data_module(quiet)
        dm.setup("fit")
    return dm.identity


@contextlib.contextmanager
def _quiet_logs(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# -- data and machine ----------------------------------------------------------------------------
def check_data(data: Any) -> None:
    """The MNIST files that are there are intact; if they are missing, they can be fetched."""
    if data is None or data.get("name") != "mnist":
        return
    if too_long := long_components(Path(str(data["root"]))):
        raise BadInput(
            f"data.root={data['root']!r} has a name of {len(too_long[0].encode())} bytes: a "
            f"filesystem allows at most {MAX_NAME_BYTES}; give the folder that holds MNIST/raw"
        )
    from initlab.mnist_files import MNIST_FILES, mnist_present, verify_mnist

    verify_mnist(data["root"])
    if mnist_present(data["root"]) or data["fallback"]:
        return
    raw = Path(str(data["root"])) / "MNIST" / "raw"
    if not data["download"]:
        raise BadInput(
            f"MNIST is not in {raw} and data.download=false: put the four files "
            f"{', '.join(MNIST_FILES)} (or their .gz) there, or set data.root to the folder "
            "that holds MNIST/raw"
        )
    if not _can_create(Path(str(data["root"]))):
        raise BadInput(
            f"MNIST is not in {raw} and data.root={data['root']} cannot be written to download it: "
            "choose a writable data.root, or one that holds MNIST/raw"
        )


def check_machine(cfg: Mapping[str, Any], seen: set[str], devices: dict[str, Any]) -> None:
    """torch builds the optimizer, Lightning the Trainer, and the model fits the device (each
    once per distinct setting in a sweep; ``devices``: trainer settings -> the device chosen)."""
    once(seen, "optimizer", cfg["optimizer"], _check_optimizer)
    if _runs_elsewhere(cfg):
        return  # the nodes' devices and memory are the scheduler's to check
    key = json.dumps(cfg["trainer"], sort_keys=True, default=str)
    if key not in devices:
        devices[key] = _check_trainer(cfg["trainer"])
    device = devices[key]
    need = {k: cfg[k] for k in ("model", "norm")}
    need["batch"] = [cfg["data"]["batch_size"], cfg["data"]["eval_batch_size"], str(device)]
    once(seen, "memory", need, lambda _: _check_memory(cfg, device))


def _runs_elsewhere(cfg: Mapping[str, Any]) -> bool:
    """Jobs that run on a cluster's nodes, whose devices this machine cannot see."""
    target = str(cfg["hydra"].get("launcher._target_") or "").lower()
    return "slurm" in target and "local" not in target


def _check_optimizer(settings: Mapping[str, Any]) -> None:
    import torch

    from initlab.config import import_target

    kwargs = {k: v for k, v in settings.items() if k not in ("_target_", "_partial_")}
    try:
        import_target(settings["_target_"])([torch.nn.Parameter(torch.zeros(1))], **kwargs)
    except Exception as exc:
        raise BadInput(f"optimizer: torch refuses {dict(settings)}: {one_line(str(exc))}") from None


def _check_trainer(settings: Mapping[str, Any]) -> Any:
    """The device a Trainer with these settings trains on, as Lightning builds it."""
    import lightning as L

    quiet = _quiet_logs("lightning", "lightning.pytorch", "lightning.fabric")
    try:
        with quiet, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = L.Trainer(
                **settings, logger=False, enable_checkpointing=False, enable_progress_bar=False
            )
    except Exception as exc:
        why = f"Lightning refuses these settings: {one_line(str(exc))}"
        raise BadInput(f"trainer={dict(settings)}: {why}") from None
    return trainer.strategy.root_device


def _check_memory(cfg: Mapping[str, Any], device: Any) -> None:
    """Refuse a model whose training would not fit in the device's memory (an estimate)."""
    from initlab.mlp import resolve_hidden_sizes, training_memory

    m, data = cfg["model"], cfg["data"]
    hidden = resolve_hidden_sizes(m["depth"], m["width"], m["hidden_sizes"])
    need, params = training_memory(
        m["input_size"], hidden, m["num_classes"], data["batch_size"], data["eval_batch_size"],
        cfg["norm"]["name"], residual=m["residual"], branch_layers=m["branch_layers"],
    )  # fmt: skip
    have = available_memory(device)
    if have is not None and need > have:
        raise BadInput(
            f"the model needs about {need / 2**30:.1f} GiB to train ({params:,} parameters, "
            f"hidden widths {_widths(hidden)}, batch {data['batch_size']}) but {device} has "
            f"{have / 2**30:.1f} GiB available: choose a smaller model.width / model.depth / "
            "model.hidden_sizes or data.batch_size"
        )


def _widths(hidden: Sequence[int]) -> str:
    text = "-".join(map(str, hidden[:6]))
    return text + (f"-... ({len(hidden)} layers)" if len(hidden) > 6 else "")


def available_memory(device: Any) -> int | None:
    """Bytes free on ``device``: a GPU's free memory, or the host's available RAM (None when it
    cannot be told)."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        with contextlib.suppress(Exception):
            return int(torch.cuda.mem_get_info(device)[0])
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None
