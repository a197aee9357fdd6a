"""One run of the study: data, network, init, train, test, results.json. No Hydra needed.

``run(cfg, output_dir, optimizer)`` takes a composed config (any nested mapping with the fields
of ``conf/train.yaml``), a directory that is this run's alone, and an optimizer factory
(``params -> Optimizer``). Everything it writes goes below ``output_dir``.

Re-running in the same ``output_dir`` continues the work, but only the work asked for: the run
there is compared with the one asked for by their fingerprints (``initlab.fingerprint``: the
settings that determine the result, and the data as the loader read it). The same run finished is
skipped; unfinished, it resumes from its checkpoint; finished with a smaller budget
(``trainer.max_epochs``), it is extended; anything else is refused (``RunMismatch``, one line
saying what differs) and nothing there is touched. ``force: true`` starts over.
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf

from initlab import fingerprint as fp
from initlab.callbacks import (
    CheckpointOnSignal,
    EpochLine,
    StepProgressBar,
    ThroughputTimer,
    ValidateAtEpochEnd,
)
from initlab.checkpoint import (
    AtomicCheckpointIO,
    checkpoint_problem,
    prepare_resume,
    previous_path,
)
from initlab.config import EXTEND, role
from initlab.dashboard import (
    final_metrics,
    hparam_values,
    layout_summary,
    session_end_summary,
    session_start_summary,
    write_summaries,
)
from initlab.data import MNISTDataModule
from initlab.diagnostics import LayerDiagnostics
from initlab.errors import RunMismatch
from initlab.inits import apply_init
from initlab.mlp import build_mlp, min_train_batch, resolve_hidden_sizes
from initlab.module import Classifier, OptimizerFactory
from initlab.results import (
    RESULTS_FILE,
    SCHEMA_VERSION,
    area_under_val_acc,
    classify,
    first_reaching,
    write_json_atomic,
)

log = logging.getLogger(__name__)

CHECKPOINT = Path("checkpoints") / "last.ckpt"  # below the run dir: what a resume starts from


def _plain(cfg: Any) -> Any:
    """A resolved plain-Python copy of a DictConfig (or the mapping itself)."""
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


class RunInterrupted(SystemExit):
    """A signal stopped the run after its step; its checkpoint is saved. The exit status is
    128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports it."""

    def __init__(self, signum: int, checkpoint: Path | None) -> None:
        super().__init__(128 + signum)
        self.signum, self.checkpoint = signum, checkpoint
        self.sweep_dir: Path | None = None  # set by a sweep's entry point

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        saved = f"checkpoint {self.checkpoint}" if self.checkpoint else "no checkpoint"
        return f"stopped by {name} ({saved}): run the same command again to resume"


def optimizer_record(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """What the optimizer that trains says it is: its class and its hyperparameters (the first
    param group's, every group shares them here)."""
    group = optimizer.param_groups[0]
    plain = (bool, int, float, str, type(None), tuple)
    hyper = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in group.items()
        if k != "params" and isinstance(v, plain)
    }
    return {"name": type(optimizer).__name__.lower(), **hyper}


def describe(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The static part of results.json: what this run is, before it runs (the optimizer and the
    dataset are added from the objects that do the work)."""
    model = cfg["model"]
    hidden = resolve_hidden_sizes(model.get("depth"), model.get("width"), model.get("hidden_sizes"))
    init_params = {k: v for k, v in cfg["init"].items() if k != "name"}
    return {
        "schema_version": SCHEMA_VERSION,
        "status": None,
        "error": None,
        "study": cfg.get("study"),
        "init": cfg["init"]["name"],
        "init_params": init_params,
        "norm": cfg["norm"]["name"],
        "activation": model["activation"],
        "depth": len(hidden),
        "hidden_sizes": hidden,
        "seed": cfg["seed"],
        "optimizer": None,
        "batch_size": cfg["data"]["batch_size"],
        "max_epochs": cfg["trainer"]["max_epochs"],
    }


# A Lightning batch costs about 1 ms of loop machinery on CPU, as much as a batch-64 step of the
# tutorial's MLP; training up to this many steps per Lightning batch amortises it.
MAX_STEPS_PER_EXECUTION = 50
MAX_SAMPLES_PER_EXECUTION = 4096  # large batches have little overhead to amortise


def steps_per_execution(cfg: Mapping[str, Any]) -> int:
    """Optimizer steps per Lightning batch: ``cfg["steps_per_execution"]``, or for "auto" the
    largest divisor of an integer ``trainer.val_check_interval`` (counted in steps) within
    MAX_STEPS_PER_EXECUTION and MAX_SAMPLES_PER_EXECUTION, so that validation falls on block ends.
    """
    value = cfg.get("steps_per_execution", "auto")
    if value != "auto":
        return int(value)
    trainer = cfg["trainer"]
    cap = max(
        1, min(MAX_STEPS_PER_EXECUTION, MAX_SAMPLES_PER_EXECUTION // cfg["data"]["batch_size"])
    )
    interval = trainer.get("val_check_interval")
    if isinstance(interval, int) and not isinstance(interval, bool):
        if trainer.get("check_val_every_n_epoch") is not None:
            return 1  # Lightning then counts the interval in batches within each epoch
        return max(k for k in range(1, cap + 1) if interval % k == 0)
    if interval is None or interval == 1.0:
        return cap  # validation at epoch ends only: any block size lands on them
    return 1  # a fraction of an epoch or a time: Lightning needs one step per batch


def data_module(cfg: Mapping[str, Any], limit_train_batches: Any = None) -> MNISTDataModule:
    """The run's data module, as its config says (batch norm gets no 1-sample last batch)."""
    d = cfg["data"]
    return MNISTDataModule(
        root=d["root"],
        name=d["name"],
        batch_size=d["batch_size"],
        eval_batch_size=d["eval_batch_size"],
        val_size=d["val_size"],
        download=d["download"],
        fallback=d["fallback"],
        mean=d["mean"],
        std=d["std"],
        split_seed=d["split_seed"],
        seed=cfg["seed"],
        synthetic_train=d.get("synthetic_train", 1000),
        synthetic_test=d.get("synthetic_test", 200),
        steps_per_execution=steps_per_execution(cfg),
        limit_train_batches=limit_train_batches,
        # an epoch's last batch too small for batch statistics joins the one before
        min_batch_size=min_train_batch(cfg["norm"]["name"]),
    )


def run(
    cfg: Mapping[str, Any],
    output_dir: str | Path,
    optimizer: OptimizerFactory,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Train and test one network; write and return its results.json record.

    A loss that stops being finite ends training early with status "diverged" (a result, not a
    crash). Any exception is recorded as status "failed" with its message, then re-raised (a
    finished record already there is never replaced by a failure). A signal (SIGTERM, SIGINT,
    ``checkpoint.signals``) stops training after its step, saves the checkpoint and raises
    ``RunInterrupted``. ``RunMismatch`` when ``output_dir`` holds another run (module docstring).
    """
    t0 = time.perf_counter()
    cfg = _plain(cfg)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    record = describe(cfg)
    record["output_dir"] = str(out.resolve())
    timer = ThroughputTimer()
    built: torch.optim.Optimizer | None = None
    try:
        trainer_kwargs = dict(cfg["trainer"])
        # Lightning would count this limit in its batches, which may be blocks of several steps:
        # the sampler applies it in steps instead.
        limit = trainer_kwargs.pop("limit_train_batches", None)
        datamodule = data_module(cfg, limit)
        datamodule.setup("fit")
        record["dataset"] = datamodule.identity  # what was read, as the loader states it
        record["batch_size"] = datamodule.batch_size
        asked = fp.fingerprint(cfg, record["dataset"])
        record["fingerprint"] = asked["sha256"]
        if cfg.get("force"):
            _clear_previous(out)
            previous = Previous("fresh")
        else:
            previous = previous_run(out, asked)
        if previous.action == "skip":
            return _skipped(out, previous.record, cfg)
        resume = previous.checkpoint
        if resume is not None:
            what = "extending the run" if previous.action == "extend" else "resuming"
            log.info("%s from %s", what, resume)
        record["seed"] = L.seed_everything(cfg["seed"], workers=True, verbose=False)
        m = cfg["model"]
        net = build_mlp(
            m["input_size"],
            record["hidden_sizes"],
            m["num_classes"],
            activation=m["activation"],
            norm=cfg["norm"]["name"],
            init=partial(
                apply_init, spec=cfg["init"], batch=datamodule.train.x, activation=m["activation"]
            ),
            init_name=cfg["init"]["name"],
        )
        built = optimizer(net.parameters())  # the one that trains, and that the record states
        record["optimizer"] = optimizer_record(built)
        module = Classifier(
            net,
            built,
            num_classes=m["num_classes"],
            log_every_n_steps=trainer_kwargs.get("log_every_n_steps", 50),
            fingerprint=asked,
        )
        signals = CheckpointOnSignal(ckpt, signals=tuple(cfg["checkpoint"]["signals"]))
        callbacks: list[L.Callback] = [
            ValidateAtEpochEnd(),
            timer,
            # last.ckpt, rewritten at each epoch end (the one checkpoint a resume needs)
            ModelCheckpoint(
                dirpath=ckpt.parent,
                filename=ckpt.stem,
                save_top_k=1,
                save_on_train_epoch_end=True,
                enable_version_counter=False,
            ),
            signals,
        ]
        if progress_bar:
            callbacks.append(StepProgressBar(datamodule.train_batches_per_epoch))
        else:
            callbacks.append(EpochLine(timer))
        diagnostics = None
        if (diag := cfg.get("diagnostics")) and diag.get("enabled"):
            diagnostics = LayerDiagnostics(
                every_n_steps=diag["every_n_steps"],
                histograms=diag["histograms"],
                histogram_every_n_steps=diag["histogram_every_n_steps"],
                symmetry=diag["symmetry"],
            )
            callbacks.append(diagnostics)
        logger = _logger(cfg.get("logger"), out)
        plugins: list[Any] = [AtomicCheckpointIO()]  # complete checkpoints, in the run dir
        if SLURMEnvironment.detect():  # requeueing is the launcher's (submitit), not Lightning's
            plugins.append(SLURMEnvironment(auto_requeue=False))
        trainer = L.Trainer(
            **trainer_kwargs,
            plugins=plugins,
            logger=logger if logger is not None else False,
            callbacks=callbacks,
            default_root_dir=out,
            enable_progress_bar=progress_bar,
        )
        record["max_epochs"] = trainer.max_epochs
        if isinstance(logger, CSVLogger):
            logger.log_hyperparams(hparam_values(cfg))  # hparams.yaml beside metrics.csv
        if isinstance(logger, TensorBoardLogger):  # this run's HPARAMS session and the layout
            session = session_start_summary(hparam_values(cfg), group_name=out.name)
            write_summaries(logger.log_dir, [session, layout_summary()])
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        except SIGTERMException:
            signum = signals.received or signal.SIGTERM
            raise RunInterrupted(signum, ckpt if signals.saved else None) from None
        t_test = time.perf_counter()
        trainer.test(module, datamodule=datamodule, verbose=False)
        test_s = time.perf_counter() - t_test
        test = trainer.callback_metrics  # the module logs at the step itself, not via Lightning
    except (RunMismatch, RunInterrupted):
        raise
    except Exception as exc:
        record_failure(
            out,
            cfg,
            f"{type(exc).__name__}: {exc}",
            record=record,
            optimizer=built,
            wall_s=time.perf_counter() - t0,
        )
        raise

    last = module.history[-1] if module.history else {"val_loss": None, "val_acc": None}
    final = {
        **module.epoch_train,
        "val_loss": last["val_loss"],
        "val_acc": last["val_acc"],
        "test_loss": float(test["test/loss"]),
        "test_acc": float(test["test/acc"]),
    }
    finite = all(v is not None and math.isfinite(v) for v in final.values())
    record.update(
        status="ok" if module.diverged_at_step is None and finite else "diverged",
        diverged_at_step=module.diverged_at_step,
        optimizer=optimizer_record(built),  # after a resume: the hyperparameters it trained with
        final=final,
        history=module.history,
        steps_to_val_acc=first_reaching(module.history, cfg["thresholds"], "step"),
        seconds_to_val_acc=first_reaching(module.history, cfg["thresholds"], "wall_s"),
        auc_val_acc=area_under_val_acc(module.history),
        layer_profile=dict(diagnostics.profile) if diagnostics is not None else None,
        timing={
            "wall_s": time.perf_counter() - t0,
            "train_s": timer.train_s,
            "val_s": timer.val_s,
            "test_s": test_s,
            "train_samples": timer.samples,
            "train_samples_per_s": timer.samples_per_s,
        },
        config=cfg,
    )
    if logger is not None:
        logger.log_metrics(final_metrics(record), step=trainer.global_step)
        logger.finalize("success")
    if isinstance(logger, TensorBoardLogger):
        write_summaries(
            logger.log_dir, [session_end_summary(record["status"])], trainer.global_step
        )
    write_json_atomic(out / RESULTS_FILE, record)
    log.info(
        "%s: test_acc %.4f val_acc %.4f, %s train samples/s -> %s",
        record["status"],
        final["test_acc"],
        final["val_acc"] or float("nan"),
        f"{timer.samples_per_s:,.0f}" if timer.samples_per_s else "?",
        out / RESULTS_FILE,
    )
    return record


def record_failure(
    out: str | Path,
    cfg: Mapping[str, Any],
    error: str,
    *,
    record: Mapping[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    wall_s: float | None = None,
    recorded_by: str | None = None,
) -> Path | None:
    """Write results.json with status "failed" and ``error``: the one writer of failed records,
    for a run that raised and for a job a launcher lost (``recorded_by="launcher"``).

    ``record``: what is known of the run (else what ``describe`` can say of ``cfg``). A
    finished record (ok, diverged) already there is kept: a failure never replaces a result.
    Returns the path written, or None when it kept the finished one.
    """
    path = Path(out) / RESULTS_FILE
    if classify(path)[0] in ("ok", "diverged"):
        log.error("%s: %s (the finished record there is kept)", Path(out), error)
        return None
    if record is None:
        try:
            record = describe(cfg)
        except Exception:  # an invalid config: keep what can be said
            init = cfg.get("init") if isinstance(cfg, Mapping) else None
            name = init.get("name") if isinstance(init, Mapping) else None
            name = name if isinstance(name, str) else "?"
            record = {"schema_version": SCHEMA_VERSION, "init": name}
    failed = dict(record)
    failed.setdefault("dataset", None)
    failed.update(
        status="failed",
        error=error,
        output_dir=str(Path(out).resolve()),
        optimizer=optimizer_record(optimizer) if optimizer is not None else failed.get("optimizer"),
        timing={"wall_s": wall_s},
        config=cfg,
    )
    if recorded_by is not None:
        failed["recorded_by"] = recorded_by
    try:
        return write_json_atomic(path, failed)
    except OSError as exc:  # a full disk: the failure itself stays the error to report
        log.error("could not record the failure in %s: %s", path, exc)
        return None


@dataclass
class Previous:
    """What an output dir holds for the run asked for: ``action`` is "fresh" (nothing to
    reuse), "skip" (finished: ``record``), "resume" or "extend" (from ``checkpoint``)."""

    action: str
    record: dict[str, Any] | None = None
    checkpoint: Path | None = None


def previous_run(
    out: str | Path, asked: Mapping[str, Any], repair: bool = True, dataset: bool = True
) -> Previous:
    """Compare what ``out`` holds with the run whose fingerprint is ``asked``.

    Raises RunMismatch (one line) when it holds another run. ``repair=False`` only reads (the
    command line's preflight): a checkpoint that does not load is left for the run to move
    aside. ``dataset=False`` compares the settings only (the data is not known yet).
    """
    out = Path(out)
    category, record, _ = classify(out / RESULTS_FILE)  # unreadable: not a finished run

    def diff_from(stored: Mapping[str, Any] | None, what: str) -> dict[str, tuple[Any, Any]]:
        if stored is None:
            raise RunMismatch(
                f"{out} holds {what} without a fingerprint (written by an older initlab), so it "
                f"cannot be told to be this run: {_HOW}"
            )
        if dataset:
            return fp.differences(stored, asked)
        return fp.differences({**stored, "dataset": None}, {**asked, "dataset": None})

    if category in ("ok", "diverged"):
        diff = diff_from(fp.of_record(record), f"a finished run ({record['status']})")
        if not diff:
            return Previous("skip", record)
        if not (record["status"] == "ok" and fp.extension_only(diff)):
            raise RunMismatch(
                f"{out} holds a finished run ({record['status']}) of another configuration "
                f"({fp.describe(diff)}): {_HOW}"
            )
        action = "extend"  # a larger budget: from its last checkpoint
    else:
        action = "resume"
    path = _usable_checkpoint(out, repair)
    if path is None and action == "resume":
        return Previous("fresh", record)
    if path is not None:
        stored, trained = _checkpoint_state(path)
        diff = diff_from(stored, f"a checkpoint ({path.name})")
        if all(role(k) == EXTEND for k in diff) and _within_budget(trained, asked["config"]):
            return Previous(action, record, path)
    if action == "extend":
        raise RunMismatch(
            f"{out} holds a finished run that cannot be extended ({fp.describe(diff)}) "
            f"without its checkpoint: {_HOW}"
        )
    raise RunMismatch(
        f"{out} holds an unfinished run of another configuration "
        f"({fp.describe(diff) or 'it has trained past the budget asked for'}): {_HOW}"
    )


_HOW = (
    "run with force=true to start it over there, or choose another output dir "
    "(hydra.run.dir=... or hydra.sweep.dir=...)"
)


def _usable_checkpoint(out: Path, repair: bool) -> Path | None:
    """The checkpoint to resume from: ``prepare_resume`` (which moves a bad one aside), or when
    only reading, the first of last.ckpt and its previous one that would load."""
    ckpt = out / CHECKPOINT
    if repair:
        return prepare_resume(ckpt)
    for path in (ckpt, previous_path(ckpt)):
        if path.is_file() and checkpoint_problem(path) is None:
            return path
    return None


def _checkpoint_state(path: Path) -> tuple[dict[str, Any] | None, dict[str, int]]:
    """A checkpoint's fingerprint (None without one) and how far it trained (epoch, step)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict):
        return None, {"epoch": 0, "global_step": 0}
    found = state.get("initlab", {}).get("fingerprint")
    trained = {k: int(state.get(k, 0)) for k in ("epoch", "global_step")}
    return (found if isinstance(found, dict) else None), trained


def _within_budget(trained: Mapping[str, int], config: Mapping[str, Any]) -> bool:
    """Whether a checkpoint that ``trained`` this far is within the budget asked for (a resume
    can change the budget, but not undo training)."""
    max_epochs = config.get("trainer.max_epochs")
    max_steps = config.get("trainer.max_steps", -1)
    epochs_ok = max_epochs is None or trained["epoch"] + 1 <= max_epochs
    steps_ok = max_steps in (None, -1) or trained["global_step"] <= max_steps
    return epochs_ok and steps_ok


def _skipped(out: Path, record: dict[str, Any], cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A finished run, asked for again: its record, with the thresholds asked for (recomputed
    from its history when they changed; the only setting a finished record follows)."""
    thresholds = cfg["thresholds"]
    recorded = (record.get("config") or {}).get("thresholds")
    if recorded != thresholds and record.get("history") is not None:
        record = {
            **record,
            "steps_to_val_acc": first_reaching(record["history"], thresholds, "step"),
            "seconds_to_val_acc": first_reaching(record["history"], thresholds, "wall_s"),
            "config": {**record["config"], "thresholds": thresholds},
        }
        write_json_atomic(out / RESULTS_FILE, record)
        log.info("%s: steps_to_val_acc recomputed for thresholds %s", out, thresholds)
    log.info(
        "%s already finished (status %s): skipping it (force=true runs it again)",
        out,
        record["status"],
    )
    return record


def _clear_previous(out: Path) -> None:
    """For force=true: remove the previous attempt's results, checkpoints and event files."""
    (out / RESULTS_FILE).unlink(missing_ok=True)
    for sub in ("checkpoints", "tensorboard"):
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)


def _logger(spec: Mapping[str, Any] | None, out: Path) -> Logger | None:
    """The run's logger, writing into ``out`` itself (or ``out/<subdir>``): one run per job
    dir, named as the job (its overrides), so no version_N."""
    if not spec or spec.get("type") in (None, "none"):
        return None
    save_dir = str(out / spec["subdir"]) if spec.get("subdir") else str(out)
    if spec["type"] == "csv":
        return CSVLogger(save_dir=save_dir, name="", version="")
    if spec["type"] != "tensorboard":
        raise ValueError(f"logger.type={spec['type']!r} is not one of: tensorboard, csv, none")
    return TensorBoardLogger(
        save_dir=save_dir, name="", version="", default_hp_metric=False, log_graph=False
    )
