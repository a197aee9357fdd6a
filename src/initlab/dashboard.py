"""The TensorBoard dashboard of a study: HPARAMS, the custom-scalars layout, tag names.

TensorBoard's hparams plugin reads an *experiment* (the hparams with their domains and whether
they differ, and the metrics) and, per run, a *session* (its values, its status). A run that
writes its own experiment (as ``SummaryWriter.add_hparams`` and Lightning's ``log_hyperparams``
do) declares only its own values, so every hparam looks constant. Here the sweep writes one
experiment when it ends (``write_experiment``, from its runs' records; the Hydra callback
``initlab.hydra_callbacks.SweepDashboard`` calls it), and each run writes only its session: the
swept axes are columns that differ, the constants come after, and the metrics are the run's
final numbers (``final_metrics``, written once at its last step). A session's values are what
the run's results record states (``hparam_values``): the dataset its data module read, not the
one its config named.

What TensorBoard (2.21) shows first, and so what the tag names are made for: Time Series and
Scalars sort the tags (digits numerically), group them by the part before the first ``/`` and
open the first two groups only. The curves are ``train/`` and ``val/``; the per-layer and
Jacobian diagnostics are ``watch/``; the epochs' means (``z_epoch/``) and the values a run logs
once, at its end (``z_final/``), come last. Every event file is a run named after its directory
(the logdir itself: ``.``), so the experiment is written into a run's directory, never at the
sweep's root. HPARAMS shows a number with five significant digits (64.000), so an integer
hparam is written as text, padded to sort as a number where TensorBoard sorts it as text (a
parallel-coordinates axis), and a run that never reached a val-accuracy threshold gets a
censored value for it (parallel coordinates leave out a run that lacks a metric).

The protos are TensorBoard's own (``tensorboard.plugins.hparams.api_pb2``, ``plugin_data_pb2``,
``tensorboard.plugins.custom_scalar.layout_pb2``), written with TensorBoard's event writer: no
TensorFlow, no torch, no Hydra at import.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2
from tensorboard.compat.proto import types_pb2
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from initlab.results import branch_layers_of, threshold_key

# A diverged run finished (its divergence is a result): the z_final/diverged metric says so.
SESSION_STATUS = {
    "ok": api_pb2.STATUS_SUCCESS,
    "diverged": api_pb2.STATUS_SUCCESS,
    "failed": api_pb2.STATUS_FAILURE,
}

# -- tag names: the one place they are spelled ------------------------------------------------
# TensorBoard opens the first two tag groups (module docstring): train/ and val/, the curves.
# After them, closed: the diagnostics' group, watch/<quantity>/<layer> (as wandb.watch's); the
# epochs' means, one point per epoch (a single point in a one-epoch run); the values a run logs
# once, at its end ("z_": they sort last).
LAYERS = "watch"
EPOCH = "z_epoch"
FINAL = "z_final"
# The input-output Jacobian's spectrum at step 0 and each epoch's end (initlab.diagnostics):
# watch/jacobian/m1, .../spread, .../s_max and the histogram watch/jacobian/singular_values
JACOBIAN = f"{LAYERS}/jacobian"
# The per-layer quantities, as (tag quantity, chart title) for the custom-scalars layout.
LAYER_CHARTS = (
    ("preact_q", "q = E[h²] at each activation's input"),
    ("grad_preact_q", "back-propagated E[(B dL/dh)²]"),
    ("grad_preact_ratio", "E[(dL/dh)²] over the last hidden layer's"),
    ("dead_fraction", "dead units (output 0 for the whole batch)"),
    ("act_std", "activation std"),
    ("grad_norm", "weight-gradient norm"),
    ("update_ratio", "update / weight norm"),
    ("weight_norm", "weight norm"),
    ("distinct_units", "distinct units (1: symmetric layer)"),
)


# The scalars a run logs: TensorBoard tags and metrics.csv columns, one name each.
TRAIN_LOSS, TRAIN_ACC = "train/loss", "train/acc"  # every log_every_n_steps steps
TRAIN_LOSS_EPOCH, TRAIN_ACC_EPOCH = f"{EPOCH}/train_loss", f"{EPOCH}/train_acc"  # epoch means
VAL_LOSS, VAL_ACC = "val/loss", "val/acc"  # at every validation
# with data.train_eval_size: the fixed training subset, evaluated at every validation
TRAIN_EVAL_LOSS, TRAIN_EVAL_ACC = "train/eval_loss", "train/eval_acc"
# once, at the run's last step, with the record: its test and the HPARAMS metrics
TEST_LOSS, TEST_ACC = f"{FINAL}/test_loss", f"{FINAL}/test_acc"
VAL_AUC, DIVERGED = f"{FINAL}/val_auc", f"{FINAL}/diverged"
# the same end values as earlier initlab versions named them: an extension of a run logged then
# drops them too, so the superseded end does not linger (in a group TensorBoard would open)
_EARLIER_ENDS = ("test/", "val/auc", "val/steps_to_", "train/diverged")


def ends_a_run(tag: str) -> bool:
    """Whether ``tag`` is logged once, with a run's record (its test, the HPARAMS metrics, the
    session's end): what an extended run supersedes at its earlier end."""
    return (
        tag.startswith(f"{FINAL}/")
        or tag == metadata.SESSION_END_INFO_TAG
        or tag.startswith(_EARLIER_ENDS)
    )


def steps_to_tag(threshold: str) -> str:
    """The tag of the first step at val accuracy >= ``threshold`` (a threshold key)."""
    return f"{FINAL}/steps_to_{threshold}"


def layer_tag(quantity: str, layer: str) -> str:
    """The TensorBoard tag of a per-layer quantity: ``watch/<quantity>/<layer>``, so that one
    quantity's layers sit side by side (one group for all diagnostics, after train/ and val/)."""
    return f"{LAYERS}/{quantity}/{layer}"


def jacobian_tag(stat: str) -> str:
    """The tag of one statistic of the Jacobian's spectrum: ``watch/jacobian/<stat>``."""
    return f"{JACOBIAN}/{stat}"


# -- what a run is, as hparams -----------------------------------------------------------------
# The hparams whose values are integers (initlab.config declares each one an int): shown as
# integers. Any other number is a float, whether or not it was typed with a point, so that one
# hparam has one type in every run of a sweep (init.gain=1,1.5).
INT_HPARAMS = frozenset(
    {"depth", "seed", "batch_size", "epochs", "branch_layers", "init.max_iter", "init.batch_size"}
)
HParam = str | int | float | bool


def _plain(name: str, v: Any) -> HParam:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return int(v) if name in INT_HPARAMS and float(v).is_integer() else float(v)
    return "null" if v is None else str(v)


def hparam_values(record: Mapping[str, Any]) -> dict[str, HParam]:
    """The hparams of a run, from its results record (results.json's, or the run's own once its
    data is read) and the composed config in its ``config``: the groups' choices, the network,
    seed, batch and epochs as the record states them, the dataset its data module read
    (``dataset.name``: ``mnist-embedded-5k`` when MNIST fell back), the init's and the
    optimizer's parameters as the config sets them (``init.gain``, ``optimizer.lr`` as ``lr``).
    One function for the sweep's experiment, the run's session and hparams.yaml, so the three
    always agree with results.json."""
    cfg = record["config"]
    optimizer = dict(cfg.get("optimizer") or {})
    optimizer.pop("_target_", None)
    optimizer.pop("_partial_", None)
    built = branch_layers_of(record)  # None: a plain MLP
    values: dict[str, Any] = {
        "init": record["init"],
        "norm": record["norm"],
        "depth": record["depth"],
        "widths": "-".join(map(str, record["hidden_sizes"])),
        "activation": record["activation"],
        "residual": built is not None,
        "seed": record["seed"],
        "batch_size": record["batch_size"],
        "epochs": record["max_epochs"],
        "optimizer": (record.get("optimizer") or {}).get("name"),
        "data": record["dataset"]["name"],
        "study": record.get("study"),
    }
    if built is not None:
        values["branch_layers"] = built
    values.update({f"init.{k}": v for k, v in (record.get("init_params") or {}).items()})
    values.update(
        {k if k in ("lr", "momentum") else f"optimizer.{k}": v for k, v in optimizer.items()}
    )
    return {k: _plain(k, v) for k, v in values.items()}


def metric_tags(thresholds: Iterable[float | str]) -> list[tuple[str, str, str]]:
    """(tag, display name, description) of the HPARAMS metrics, one steps column per
    threshold. TensorBoard takes each metric's last value in the run: val/acc is the module's
    own scalar; the others are written once, at the run's end (``final_metrics``). Every run has
    every metric, so parallel coordinates, which leave out a run that lacks one, show them all."""
    out = [
        (TEST_ACC, "test acc", "final test accuracy (the held-out test images, used once)"),
        (VAL_ACC, "val acc", "the last validation's accuracy"),
        (VAL_AUC, "val AUC", "mean val accuracy over training: fast and good"),
    ]
    for t in sorted({threshold_key(float(t)) for t in thresholds}, key=float):
        pct = f"{float(t) * 100:g}"
        description = (
            f"first step at which val acc >= {t}; a run that never reached it shows its budget "
            "in steps + 1 (censored: not within its budget)"
        )
        out.append((steps_to_tag(t), f"steps to {pct}%", description))
    out.append((DIVERGED, "diverged", "1: the training loss became NaN/inf, 0: it did not"))
    return out


def final_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The end-of-run scalars of HPARAMS' metrics, from the run's results record: val/auc,
    steps_to_<t> and diverged. A threshold the run never reached is censored at its budget in
    steps + 1 (results.json keeps null: "never"); a value that is not finite is left out."""
    budget = (record.get("budget") or {}).get("steps")
    censored = budget + 1 if isinstance(budget, int) and not isinstance(budget, bool) else None
    values: dict[str, Any] = {
        VAL_AUC: record.get("auc_val_acc"),
        DIVERGED: {"ok": 0.0, "diverged": 1.0}.get(record.get("status")),
    }
    for key, step in (record.get("steps_to_val_acc") or {}).items():
        values[steps_to_tag(key)] = censored if step is None else step
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


# -- the protos --------------------------------------------------------------------------------
def _plugin_summary(tag: str, content: bytes, plugin: str) -> Summary:
    meta = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name=plugin, content=content)
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


def _hparams_summary(tag: str, **data: Any) -> Summary:
    content = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **data)
    return _plugin_summary(tag, content.SerializeToString(), metadata.PLUGIN_NAME)


# HPARAMS shows every number with five significant digits (64 as 64.000): an integer is written
# as text, right-aligned to this width, so that text order is number order where TensorBoard
# sorts the values as text (a parallel-coordinates axis: 2 < 16); the page drops the spaces.
INT_WIDTH = 10  # the digits of the largest seed, 2**32 - 1


def _value(v: HParam) -> Any:
    if isinstance(v, bool):
        return struct_pb2.Value(bool_value=v)
    if isinstance(v, int):
        return struct_pb2.Value(string_value=f"{v:>{INT_WIDTH}d}")
    if isinstance(v, float):
        return struct_pb2.Value(number_value=v)
    return struct_pb2.Value(string_value=v)


def experiment_summary(
    jobs: Sequence[Mapping[str, HParam]], metrics: Sequence[tuple[str, str, str]]
) -> Summary:
    """The hparams experiment of a sweep whose jobs have the hparam values ``jobs``: each hparam
    with the discrete domain of its values (an integer one as text, in number order) and
    ``differs`` when it has more than one; in TensorBoard's own order (those that differ first,
    each part by name), the constants after."""
    names: dict[str, list] = {}
    for job in jobs:
        for k, v in job.items():
            if v not in names.setdefault(k, []):
                names[k].append(v)

    infos = []
    for name in sorted(names, key=lambda n: (len(names[n]) < 2, n)):
        values = names[name]
        kinds = {type(v) for v in values}
        if kinds == {float}:
            kind, domain = api_pb2.DATA_TYPE_FLOAT64, sorted(values)
        elif kinds == {bool}:
            kind, domain = api_pb2.DATA_TYPE_BOOL, sorted(values)
        elif kinds == {int}:
            kind, domain = api_pb2.DATA_TYPE_STRING, sorted(values)
        else:
            kind, domain = api_pb2.DATA_TYPE_STRING, sorted(map(str, values))
        infos.append(
            api_pb2.HParamInfo(
                name=name,
                type=kind,
                domain_discrete=struct_pb2.ListValue(values=[_value(v) for v in domain]),
                differs=len(values) > 1,
            )
        )
    metric_infos = [
        api_pb2.MetricInfo(
            name=api_pb2.MetricName(tag=tag), display_name=display, description=description
        )
        for tag, display, description in metrics
    ]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metric_infos)
    return _hparams_summary(metadata.EXPERIMENT_TAG, experiment=experiment)


def session_start_summary(values: Mapping[str, HParam], group_name: str) -> Summary:
    """A run's session: its hparam values, grouped under ``group_name`` (the run's name)."""
    info = plugin_data_pb2.SessionStartInfo(group_name=group_name, start_time_secs=time.time())
    for k, v in values.items():
        info.hparams[k].CopyFrom(_value(v))
    return _hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=info)


def session_end_summary(status: str) -> Summary:
    """The end of a run's session: ok and diverged -> success (finished), failed -> failure."""
    info = plugin_data_pb2.SessionEndInfo(
        status=SESSION_STATUS.get(status, api_pb2.STATUS_UNKNOWN), end_time_secs=time.time()
    )
    return _hparams_summary(metadata.SESSION_END_INFO_TAG, session_end_info=info)


def layout_summary() -> Summary:
    """The CUSTOM SCALARS tab: every run's val accuracy and train loss on one chart each, then one
    multi-line chart per per-layer quantity (every layer of every run)."""

    def chart(title: str, *tags: str) -> layout_pb2.Chart:
        return layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=tags))

    training = layout_pb2.Category(
        title="Accuracy and loss",
        chart=[
            chart("val accuracy", f"^{VAL_ACC}$"),
            chart("train loss", f"^{TRAIN_LOSS}$"),
            chart("val loss", f"^{VAL_LOSS}$"),
            chart("train accuracy", f"^{TRAIN_ACC}$"),
            chart("train accuracy, evaluated on a fixed subset", f"^{TRAIN_EVAL_ACC}$"),
        ],
    )
    layers = layout_pb2.Category(
        title="Layers (one line per layer)",
        chart=[chart(title, rf"^{LAYERS}/{q}/") for q, title in LAYER_CHARTS],
    )
    layout = layout_pb2.Layout(category=[training, layers])
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="custom_scalars"))
    tensor = TensorProto(
        dtype=types_pb2.DT_STRING,
        string_val=[layout.SerializeToString()],
        tensor_shape=TensorShapeProto(),
    )
    value = Summary.Value(tag="custom_scalars__config__", tensor=tensor, metadata=meta)
    return Summary(value=[value])


SESSION_SUFFIX = ".initlab"  # the event files of a run's HPARAMS session (its start, its end)


def write_summaries(
    logdir: str | Path, summaries: Iterable[Summary], step: int = 0, suffix: str = SESSION_SUFFIX
) -> Path:
    """Write ``summaries`` into an event file of their own in ``logdir``, named with ``suffix``
    (TensorBoard reads every event file of a directory as one run)."""
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(logdir), filename_suffix=suffix)
    try:
        for summary in summaries:
            writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))
    finally:
        writer.close()
    return logdir


def write_session(logdir: str | Path, summaries: Iterable[Summary]) -> Path:
    """A run's HPARAMS session (and layout) in an event file of its own, which replaces any
    earlier one: an extended run states its new budget, and TensorBoard keeps the first session
    start it reads in a run, so the old one must go (the new file is written first)."""
    earlier = [p for p in Path(logdir).glob(f"*{SESSION_SUFFIX}") if p.is_file()]
    write_summaries(logdir, summaries, suffix=SESSION_SUFFIX)
    for path in earlier:
        path.unlink(missing_ok=True)
    return Path(logdir)


# -- the sweep's side (a Hydra callback) -------------------------------------------------------
EXPERIMENT_SUFFIX = ".initlab-experiment"  # the event file of the sweep's experiment


def _log_dir(record: Mapping[str, Any]) -> Path | None:
    """Where a run's TensorBoard events are (None: it logged none): its run dir (that of its
    results.json, as ``initlab.report.load_runs`` gives it, else its ``output_dir``) or its
    ``logger.subdir``."""
    logger = record["config"].get("logger") or {}
    if logger.get("type") != "tensorboard":
        return None
    path = record.get("_path")
    run_dir = Path(path).parent if path else Path(str(record.get("output_dir")))
    return run_dir / logger["subdir"] if logger.get("subdir") else run_dir


def write_experiment(sweep_dir: str | Path, records: Sequence[Mapping[str, Any]]) -> Path | None:
    """Write the hparams experiment of the runs ``records`` (results.json records) that have an
    HPARAMS session (they logged to TensorBoard and read their data), replacing any earlier one
    below ``sweep_dir`` (with two, TensorBoard shows the first it reads). It goes into the first
    run's log dir, in an event file of its own: an event file at the sweep's root would be a run
    named ``.``, and the plugin finds the experiment in any run. Returns that dir; None without
    a run that has a session."""
    runs = sorted(
        (
            (log_dir, r)
            for r in records
            if isinstance(r.get("config"), Mapping)
            and isinstance(r.get("dataset"), Mapping)
            and (log_dir := _log_dir(r)) is not None
        ),
        key=lambda pair: str(pair[0]),
    )
    for old in Path(sweep_dir).rglob(f"events.out.tfevents.*{EXPERIMENT_SUFFIX}"):
        old.unlink()
    if not runs:
        return None
    jobs = [hparam_values(r) for _, r in runs]
    thresholds = {t for _, r in runs for t in r["config"].get("thresholds") or ()}
    summary = experiment_summary(jobs, metric_tags(thresholds))
    return write_summaries(runs[0][0], [summary], suffix=EXPERIMENT_SUFFIX)
