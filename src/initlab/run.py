"""One run of the study: data, network, init, train, test, results.json. No Hydra needed.

``run(cfg, output_dir, optimizer)`` takes a composed config (any nested mapping with the fields
of ``conf/train.yaml``), a directory that is this run's alone (it holds its lock while it runs:
``initlab.rundir``), and an optimizer factory (``params -> Optimizer``). Everything it writes
goes below ``output_dir``.

Re-running in the same ``output_dir`` continues the work, but only the work asked for: the run
there is compared with the one asked for by their fingerprints (``initlab.fingerprint``: the
settings that determine the result, the budget in steps, and the data as the loader read it).
The same run finished is skipped; unfinished, it resumes from its checkpoint; finished with a
smaller budget, it is extended; anything else is refused (``RunMismatch``, one line saying what
differs) and nothing there is touched. ``force: true`` starts over, the old run moved aside.
"""

from __future__ import annotations

import logging
import math
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
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf

from initlab import fingerprint as fp
from initlab._lightning import leave_signals_to_initlab
from initlab.callbacks import (
    Boundary,
    EpochLine,
    StepProgressBar,
    StopAtBoundary,
    ThroughputTimer,
    ValidateOnSchedule,
)
from initlab.checkpoint import (
    AtomicCheckpointIO,
    checkpoint_problem,
    prepare_resume,
    previous_path,
)
from initlab.config import min_train_batch
from initlab.dashboard import (
    TEST_ACC,
    TEST_LOSS,
    ends_a_run,
    final_metrics,
    hparam_values,
    layout_summary,
    session_end_summary,
    session_start_summary,
    write_session,
    write_summaries,
)
from initlab.data import MNISTDataModule
from initlab.diagnostics import LayerDiagnostics
from initlab.errors import RunDirBusy, RunMismatch
from initlab.inits import apply_init
from initlab.lifecycle import (
    HardStop,
    Phase,
    RunInterrupted,
    StopGuard,
    signal_numbers,
)
from initlab.loggers import make_logger
from initlab.mlp import branch_layers, build_mlp, resolve_hidden_sizes
from initlab.module import Classifier, OptimizerFactory
from initlab.propagation.spectrum import run_section
from initlab.results import (
    SCHEMA_VERSION,
    area_under_val_acc,
    classify,
    first_reaching,
    write_json_atomic,
)
from initlab.rundir import CHECKPOINT, RESULTS_FILE, RunDir
from initlab.runtime import runtime_record
from initlab.schedule import schedule_of, trainer_arguments

__all__ = ["RunInterrupted", "RunMismatch", "data_module", "previous_run", "record_failure", "run"]

log = logging.getLogger(__name__)


def _plain(cfg: Any) -> Any:
    """A resolved plain-Python copy of a DictConfig (or the mapping itself)."""
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


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
        "max_epochs": cfg["trainer"]["max_epochs"],  # then the schedule's, once it is known
        "budget": None,
    }


def data_module(cfg: Mapping[str, Any]) -> MNISTDataModule:
    """The run's data module, as its config says (batch norm gets no 1-sample last batch)."""
    d = cfg["data"]
    return MNISTDataModule(
        root=d["root"],
        name=d["name"],
        batch_size=d["batch_size"],
        eval_batch_size=d["eval_batch_size"],
        val_size=d["val_size"],
        train_eval_size=d["train_eval_size"],
        download=d["download"],
        fallback=d["fallback"],
        mean=d["mean"],
        std=d["std"],
        split_seed=d["split_seed"],
        seed=cfg["seed"],
        synthetic_train=d["synthetic_train"],
        synthetic_test=d["synthetic_test"],
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

    The run is a sequence of phases (initlab.lifecycle): claim the output dir (``RunDirBusy``
    when another process holds it), set up (data, fingerprint, what the dir holds), fit, test,
    record. A signal (SIGTERM, SIGINT, ``checkpoint.signals``) stops it at the next boundary of
    its phase with that state saved and raises ``RunInterrupted``; the same call then continues
    to the record an uninterrupted run writes. A loss that stops being finite ends training with
    status "diverged" (a result, not a crash). Any exception is recorded as status "failed" with
    its message, then re-raised (a finished record already there is never replaced by a
    failure). ``RunMismatch`` when ``output_dir`` holds another run (module docstring).
    """
    cfg = _plain(cfg)
    guard = StopGuard(signal_numbers(cfg["checkpoint"]["signals"]))
    with guard, RunDir(output_dir) as rundir:
        return _Run(cfg, rundir, optimizer, progress_bar, guard).phases()


class _Run:
    """One run's phases and what they hand each other (``run`` is the public entry)."""

    def __init__(
        self,
        cfg: dict[str, Any],
        rundir: RunDir,
        optimizer: OptimizerFactory,
        progress_bar: bool,
        guard: StopGuard,
    ) -> None:
        self.cfg, self.rundir, self.make_optimizer = cfg, rundir, optimizer
        self.progress_bar, self.guard = progress_bar, guard
        self.t0 = time.perf_counter()
        self.record = describe(cfg)
        self.record["output_dir"] = str(rundir.path.resolve())
        self.timer = ThroughputTimer()
        self.built: torch.optim.Optimizer | None = None

    def phases(self) -> dict[str, Any]:
        try:
            previous = self.setup()
            if previous.action == "skip":
                record = _skipped(self.rundir.path, previous.record, self.cfg)
                self._stopped(Phase.SETUP, finished=True)
                return record
            self._stopped(Phase.SETUP)
            self.fit(previous)
            test = self.test()
            return self.write_record(test)
        except (RunMismatch, RunInterrupted, RunDirBusy):
            raise
        except HardStop as stop:
            ckpt = self.rundir.checkpoint
            raise RunInterrupted(
                stop.signum, ckpt if ckpt.is_file() else None, at_once=True
            ) from None
        except Exception as exc:
            record_failure(
                self.rundir.path,
                self.cfg,
                f"{type(exc).__name__}: {exc}",
                record=self.record,
                optimizer=self.built,
                wall_s=time.perf_counter() - self.t0,
            )
            raise

    # -- setup: what the dir holds, and what this run is ------------------------------------
    def setup(self) -> Previous:
        cfg, record = self.cfg, self.record
        self.datamodule = datamodule = data_module(cfg)
        datamodule.setup("fit")
        record["dataset"] = datamodule.identity  # what was read, as the loader states it
        record["batch_size"] = datamodule.batch_size
        self.schedule = schedule_of(cfg, len(datamodule.train))
        datamodule.schedule = self.schedule
        record["budget"] = self.schedule.describe()
        record["max_epochs"] = self.schedule.epochs
        self.asked = fp.fingerprint(cfg, record["dataset"], self.schedule.total_steps)
        record["fingerprint"] = self.asked["sha256"]
        for temp in self.rundir.remove_stale_temp_files():
            log.info("removed %s, left by a write that was interrupted", temp)
        if cfg["force"]:
            aside = self.rundir.move_aside(cfg["logger"]["subdir"])
            if aside is not None:
                log.warning("force=true: the previous run's files are moved to %s", aside)
            return Previous("fresh")
        return previous_run(self.rundir.path, self.asked)

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, previous: Previous) -> None:
        cfg, record, schedule = self.cfg, self.record, self.schedule
        resume = previous.checkpoint
        if resume is not None:
            what = "extending the run" if previous.action == "extend" else "resuming"
            step = _checkpoint_state(resume)[1]["global_step"]
            log.info("%s from %s (step %d of %d)", what, resume, step, schedule.total_steps)
            ended = ends_a_run if previous.action == "extend" else None
            dropped = self.rundir.truncate_logs(step, cfg["logger"]["subdir"], ended)
            if dropped:
                log.info("dropped %d logged values after step %d (written again)", dropped, step)
        elif previous.action == "fresh" and cfg["logger"]["type"] != "none":
            # a fresh start in a dir whose run left only logs (no checkpoint survived)
            self.rundir.truncate_logs(-1, cfg["logger"]["subdir"])
        record["seed"] = L.seed_everything(cfg["seed"], workers=True, verbose=False)
        m = cfg["model"]
        net = build_mlp(
            m["input_size"],
            record["hidden_sizes"],
            m["num_classes"],
            activation=m["activation"],
            norm=cfg["norm"]["name"],
            init=partial(
                apply_init,
                spec=cfg["init"],
                batch=self.datamodule.train.x,
                activation=m["activation"],
            ),
            init_name=cfg["init"]["name"],
            residual=m["residual"],
            branch_layers=m["branch_layers"],
        )
        record["branch_layers"] = branch_layers(net)
        self.built = built = self.make_optimizer(net.parameters())
        record["optimizer"] = optimizer_record(built)
        self.module = module = Classifier(
            net,
            built,
            num_classes=m["num_classes"],
            log_every_n_steps=cfg["trainer"]["log_every_n_steps"],
            fingerprint=self.asked,
            schedule=schedule,
        )
        ckpt = self.rundir.checkpoint
        self.stopper = StopAtBoundary(ckpt, schedule, self.guard)
        callbacks: list[L.Callback] = [
            ValidateOnSchedule(schedule),
            self.timer,
            # last.ckpt, rewritten at each epoch end (the one checkpoint a resume needs)
            ModelCheckpoint(
                dirpath=ckpt.parent,
                filename=ckpt.stem,
                save_top_k=1,
                save_on_train_epoch_end=True,
                enable_version_counter=False,
            ),
            self.stopper,
        ]
        if self.progress_bar:
            callbacks.append(StepProgressBar(schedule.steps_per_epoch))
        else:
            callbacks.append(EpochLine(self.timer))
        self.diagnostics = None
        if (diag := cfg["diagnostics"])["enabled"]:
            self.diagnostics = LayerDiagnostics(
                every_n_steps=diag["every_n_steps"],
                histograms=diag["histograms"],
                histogram_every_n_steps=diag["histogram_every_n_steps"],
                symmetry=diag["symmetry"],
                schedule=schedule,
                jacobian_inputs=diag.get("jacobian_inputs", 0),
            )
            callbacks.append(self.diagnostics)
        self.logger = logger = make_logger(cfg["logger"], self.rundir)
        plugins: list[Any] = [AtomicCheckpointIO()]  # complete checkpoints, in the run dir
        if SLURMEnvironment.detect():  # requeueing is the launcher's (submitit), not Lightning's
            plugins.append(SLURMEnvironment(auto_requeue=False))
        self.trainer = trainer = L.Trainer(
            **trainer_arguments(cfg, schedule),
            plugins=plugins,
            logger=logger if logger is not None else False,
            callbacks=callbacks,
            default_root_dir=self.rundir.path,
            enable_progress_bar=self.progress_bar,
        )
        leave_signals_to_initlab(trainer)  # the guard handles them, at the phases' boundaries
        # the record states the data read by now; an extended run, its new budget
        if logger is not None and (resume is None or previous.action == "extend"):
            values = hparam_values({**record, "config": cfg})
            _log_hyperparams(logger, values, self.rundir.path.name)
        # how the arithmetic is done, as torch says (after Lightning chose the device)
        self.runtime = runtime_record(trainer.strategy.root_device)
        try:
            trainer.fit(module, datamodule=self.datamodule, ckpt_path=resume)
        except Boundary as boundary:
            if not self.stopper.saved:  # its checkpoint could not be written (a full disk)
                raise self.stopper.error or OSError("the checkpoint was not saved") from None
            if boundary.reason == "signal":
                self._stopped(Phase.FIT, boundary.step)
        self._stopped(Phase.FIT, trainer.global_step)

    def _stopped(self, phase: Phase, step: int | None = None, finished: bool = False) -> None:
        """At a phase's boundary: if a signal arrived, say so once (with the state saved), hand
        it on (submitit's requeue), and stop."""
        if not self.guard.stopping:
            return
        ckpt = self.rundir.checkpoint
        saved = ckpt if phase in (Phase.FIT, Phase.TEST) and ckpt.is_file() else None
        stop = RunInterrupted(
            self.guard.received or signal.SIGTERM, saved, phase, step, finished=finished
        )
        log.warning("%s", str(stop).replace(signal.Signals(stop.signum).name, self.guard.note(), 1))
        self.guard.hand_on()
        raise stop

    # -- test -----------------------------------------------------------------------------------
    def test(self) -> dict[str, float]:
        t_test = time.perf_counter()
        self.trainer.test(self.module, datamodule=self.datamodule, verbose=False)
        self.test_s = time.perf_counter() - t_test
        metrics = self.trainer.callback_metrics  # the module's, read here (one host sync)
        test = {"test_loss": float(metrics[TEST_LOSS]), "test_acc": float(metrics[TEST_ACC])}
        self._stopped(Phase.TEST, self.trainer.global_step)  # the test is done again on resume
        return test

    # -- record ---------------------------------------------------------------------------------
    def _jacobian(self, cfg: Mapping[str, Any], record: Mapping[str, Any]) -> dict | None:
        """results.json's ``jacobian``: the spectrum the diagnostics measured at step 0 beside
        its prediction (``initlab.propagation.spectrum.run_section``); None when not measured."""
        measured = self.diagnostics.jacobian if self.diagnostics else None
        m = cfg["model"]
        sizes = [m["input_size"], *record["hidden_sizes"], m["num_classes"]]
        return run_section(measured, cfg["init"], sizes, m["activation"])

    def write_record(self, test: dict[str, float]) -> dict[str, Any]:
        cfg, record, module, trainer = self.cfg, self.record, self.module, self.trainer
        history = module.history
        last = history[-1] if history else {"val_loss": None, "val_acc": None}
        final = {
            **module.final_train_metrics(),
            "val_loss": last["val_loss"],
            "val_acc": last["val_acc"],
            **{k: last[k] for k in ("train_eval_loss", "train_eval_acc") if k in last},
            **test,
        }
        finite = all(v is not None and math.isfinite(v) for v in final.values())
        timer = self.timer
        record.update(
            status="ok" if module.diverged_at_step is None and finite else "diverged",
            diverged_at_step=module.diverged_at_step,
            optimizer=optimizer_record(self.built),  # after a resume: what it trained with
            final=final,
            history=history,
            steps_to_val_acc=first_reaching(history, cfg["thresholds"], "step"),
            seconds_to_val_acc=first_reaching(history, cfg["thresholds"], "wall_s"),
            auc_val_acc=area_under_val_acc(history),
            runtime=self.runtime,
            layer_profile=dict(self.diagnostics.profile) if self.diagnostics else None,
            jacobian=self._jacobian(cfg, record),
            timing={
                "wall_s": time.perf_counter() - self.t0,
                "train_s": timer.train_s,
                "val_s": timer.val_s,
                "test_s": self.test_s,
                "train_samples": timer.samples,
                "train_samples_per_s": timer.samples_per_s,
            },
            config=cfg,
        )
        logger = self.logger
        if logger is not None:
            scalars = {TEST_LOSS: test["test_loss"], TEST_ACC: test["test_acc"]}
            logger.log_metrics({**scalars, **final_metrics(record)}, step=trainer.global_step)
            logger.finalize("success")
        if isinstance(logger, TensorBoardLogger):
            write_summaries(
                logger.log_dir, [session_end_summary(record["status"])], trainer.global_step
            )
        write_json_atomic(self.rundir.results, record)  # the commit point
        log.info(
            "%s: test_acc %.4f val_acc %.4f, %s train samples/s -> %s",
            record["status"],
            final["test_acc"],
            final["val_acc"] or float("nan"),
            f"{timer.samples_per_s:,.0f}" if timer.samples_per_s else "?",
            self.rundir.results,
        )
        self._stopped(Phase.RECORD, finished=True)
        return record


def _log_hyperparams(logger: Logger, values: Mapping[str, Any], group_name: str) -> None:
    """The run's HPARAMS session and layout (TensorBoard), or hparams.yaml (csv), as it starts
    or is extended: its ``hparam_values``, from its record, so they say what results.json says."""
    if isinstance(logger, TensorBoardLogger):
        session = session_start_summary(values, group_name=group_name)
        write_session(logger.log_dir, [session, layout_summary()])
    else:
        logger.log_hyperparams(dict(values))


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
        # the data is not read yet: the settings alone (the budget needs the data's size)
        return fp.differences(_settings(stored), _settings(asked))

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
        budget = asked["config"].get(fp.BUDGET)
        within = budget is None or trained["global_step"] <= budget  # training is not undone
        if fp.budget_only(diff) and within:
            return Previous(action, record, path)
    if action == "extend":
        raise RunMismatch(
            f"{out} holds a finished run that cannot be extended ({fp.describe(diff)}) "
            f"without its checkpoint: {_HOW}"
        )
    if fp.budget_only(diff):
        raise RunMismatch(
            f"{out} holds an unfinished run that has trained {trained['global_step']} steps, "
            f"past the {budget} steps asked for now: {_HOW}"
        )
    raise RunMismatch(
        f"{out} holds an unfinished run of another configuration ({fp.describe(diff)}): {_HOW}"
    )


def _settings(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """A fingerprint without the data and the budget (which needs the data's size)."""
    config = {k: v for k, v in fingerprint["config"].items() if k != fp.BUDGET}
    return {"sha256": None, "config": config, "dataset": None}


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
