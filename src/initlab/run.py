"""One run of the study: data, network, init, train, test, results.json. No Hydra needed.

``run(cfg, output_dir, optimizer)`` takes a composed config (any nested mapping with the fields
of ``conf/train.yaml``), a directory that is this run's alone, and an optimizer factory
(``params -> Optimizer``). Everything it writes goes below ``output_dir``.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf

from initlab.callbacks import (
    CheckpointOnSignal,
    EpochLine,
    StepProgressBar,
    ThroughputTimer,
    ValidateAtEpochEnd,
)
from initlab.data import MNISTDataModule
from initlab.diagnostics import LayerDiagnostics
from initlab.inits import apply_init
from initlab.mlp import build_mlp, resolve_hidden_sizes
from initlab.module import Classifier, OptimizerFactory
from initlab.results import (
    RESULTS_FILE,
    SCHEMA_VERSION,
    area_under_val_acc,
    first_reaching,
    read_results,
    write_json_atomic,
)

log = logging.getLogger(__name__)


def _plain(cfg: Any) -> Any:
    """A resolved plain-Python copy of a DictConfig (or the mapping itself)."""
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def describe(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The static part of results.json: what this run is, before it runs."""
    model, opt = cfg["model"], cfg["optimizer"]
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
        "optimizer": {
            "name": str(opt.get("_target_", opt.get("name", "?"))).rsplit(".", 1)[-1].lower(),
            "lr": opt.get("lr"),
            "momentum": opt.get("momentum"),
        },
        "batch_size": cfg["data"]["batch_size"],
        "max_epochs": cfg["trainer"]["max_epochs"],
    }


def hparams(record: Mapping[str, Any]) -> dict[str, Any]:
    """Flat scalar hparams for TensorBoard's HPARAMS tab."""
    return {
        "init": record["init"],
        "norm": record["norm"],
        "depth": record["depth"],
        "widths": "-".join(map(str, record["hidden_sizes"])),
        "activation": record["activation"],
        "optimizer": record["optimizer"]["name"],
        "lr": record["optimizer"]["lr"],
        "momentum": record["optimizer"]["momentum"] or 0.0,
        "batch_size": record["batch_size"],
        "seed": record["seed"],
        "dataset": record["dataset"]["name"],
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


def _data_module(cfg: Mapping[str, Any], limit_train_batches: Any = None) -> MNISTDataModule:
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
    )


def run(
    cfg: Mapping[str, Any],
    output_dir: str | Path,
    optimizer: OptimizerFactory,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Train and test one network; write and return its results.json record.

    A loss that stops being finite ends training early with status "diverged" (a result, not a
    crash). Any exception is recorded as status "failed" with its message, then re-raised.

    Re-running in the same ``output_dir`` continues the work: a run whose results.json says "ok"
    or "diverged" is skipped (``force: true`` in the config runs it again from scratch), and an
    unfinished one resumes from ``checkpoints/last.ckpt`` (saved at each epoch end and when the
    process is told to stop).
    """
    t0 = time.perf_counter()
    cfg = _plain(cfg)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    force = bool(cfg.get("force", False))
    if not force and (done := _finished(out)) is not None:
        log.info(
            "%s already finished (status %s): skipping it (force=true runs it again)",
            out,
            done["status"],
        )
        return done
    ckpt = out / "checkpoints" / "last.ckpt"
    if force:
        _clear_previous(out)
    resume = ckpt if ckpt.is_file() else None
    if resume is not None:
        log.info("resuming from %s", resume)
    record = describe(cfg)
    record["output_dir"] = str(out.resolve())
    timer = ThroughputTimer()
    try:
        L.seed_everything(cfg["seed"], workers=True, verbose=False)
        trainer_kwargs = dict(cfg["trainer"])
        # Lightning would count this limit in its batches, which may be blocks of several steps:
        # the sampler applies it in steps instead.
        limit = trainer_kwargs.pop("limit_train_batches", None)
        datamodule = _data_module(cfg, limit)
        datamodule.setup("fit")
        record["dataset"] = {"name": datamodule.dataset_name, **datamodule.sizes}
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
        module = Classifier(
            net,
            optimizer,
            num_classes=m["num_classes"],
            log_every_n_steps=trainer_kwargs.get("log_every_n_steps", 50),
        )
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
            CheckpointOnSignal(ckpt, signals=tuple(cfg.get("checkpoint", {}).get("signals", ()))),
        ]
        if progress_bar:
            callbacks.append(StepProgressBar(datamodule.train_batches_per_epoch))
        else:
            callbacks.append(EpochLine(timer))
        if (diag := cfg.get("diagnostics")) and diag.get("enabled"):
            callbacks.append(
                LayerDiagnostics(
                    every_n_steps=diag["every_n_steps"],
                    histograms=diag["histograms"],
                    histogram_every_n_steps=diag["histogram_every_n_steps"],
                    symmetry=diag["symmetry"],
                )
            )
        logger = _logger(cfg.get("logger"), out)
        trainer = L.Trainer(
            **trainer_kwargs,
            # Under SLURM, requeueing belongs to the launcher (submitit), never to Lightning too.
            plugins=[SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None,
            logger=logger if logger is not None else False,
            callbacks=callbacks,
            default_root_dir=out,
            enable_progress_bar=progress_bar,
        )
        if logger is not None:
            logger.log_hyperparams(hparams(record), {"hp/val_acc": 0.0, "hp/test_acc": 0.0})
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        t_test = time.perf_counter()
        trainer.test(module, datamodule=datamodule, verbose=False)
        test_s = time.perf_counter() - t_test
        test = trainer.callback_metrics  # the module logs at the step itself, not via Lightning
    except Exception as exc:
        record.update(
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            timing={"wall_s": time.perf_counter() - t0},
        )
        record.setdefault("dataset", None)
        record["config"] = cfg
        write_json_atomic(out / RESULTS_FILE, record)
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
        final=final,
        history=module.history,
        steps_to_val_acc=first_reaching(module.history, cfg["thresholds"], "step"),
        seconds_to_val_acc=first_reaching(module.history, cfg["thresholds"], "wall_s"),
        auc_val_acc=area_under_val_acc(module.history),
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
        logger.log_metrics(
            {"hp/val_acc": final["val_acc"], "hp/test_acc": final["test_acc"]},
            step=trainer.global_step,
        )
        logger.finalize("success")
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


def _finished(out: Path) -> dict[str, Any] | None:
    """The results.json record in ``out`` if it holds a finished run ("ok" or "diverged")."""
    try:
        record = read_results(out / RESULTS_FILE)
    except (OSError, ValueError):
        return None  # absent, or unreadable: not a finished run
    return record if record.get("status") in ("ok", "diverged") else None


def _clear_previous(out: Path) -> None:
    """For force=true: remove the previous attempt's results, checkpoints and event files."""
    (out / RESULTS_FILE).unlink(missing_ok=True)
    for sub in ("checkpoints", "tensorboard"):
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)


def _logger(spec: Mapping[str, Any] | None, out: Path) -> TensorBoardLogger | None:
    """TensorBoard logs in ``out/<subdir>`` itself: one run per job dir, so no version_N."""
    if not spec or spec.get("type") in (None, "none"):
        return None
    if spec["type"] != "tensorboard":
        raise ValueError(f"logger.type={spec['type']!r} is not one of: tensorboard, none")
    return TensorBoardLogger(
        save_dir=str(out),
        name=spec.get("subdir", "tensorboard"),
        version="",
        default_hp_metric=False,
        log_graph=False,
    )
