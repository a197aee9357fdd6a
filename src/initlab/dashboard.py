"""The TensorBoard dashboard of a study: HPARAMS, the custom-scalars layout, tag names.

TensorBoard's hparams plugin reads an *experiment* (the hparams with their domains and whether
they differ, and the metrics) and, per run, a *session* (its values, its status). A run that
writes its own experiment (as ``SummaryWriter.add_hparams`` and Lightning's ``log_hyperparams``
do) declares only its own values, so every hparam looks constant. Here the sweep writes one
experiment at its root when it ends (``write_experiment``, from its runs' records; the Hydra
callback ``initlab.hydra_callbacks.SweepDashboard`` calls it), and each run writes only its
session: the swept axes are columns that differ, the constants come after, and the metrics are
the run's final numbers (``final_metrics``, written once at its last step).

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

from initlab.results import threshold_key

# The hparams shown first when they differ (then any other, by name); constants follow.
HPARAM_ORDER = (
    "init",
    "norm",
    "depth",
    "widths",
    "activation",
    "seed",
    "lr",
    "momentum",
    "batch_size",
    "epochs",
    "optimizer",
    "data",
    "study",
)
# A diverged run finished (its divergence is a result): the train/diverged metric says so.
SESSION_STATUS = {
    "ok": api_pb2.STATUS_SUCCESS,
    "diverged": api_pb2.STATUS_SUCCESS,
    "failed": api_pb2.STATUS_FAILURE,
}
# The tag group of the per-layer diagnostics, watch/<quantity>/<layer> (as wandb.watch's): after
# test/, train/ and val/ in TensorBoard's alphabetical groups, which open the first ones.
LAYERS = "watch"
# The input-output Jacobian's spectrum at step 0 and each epoch's end (initlab.diagnostics):
# jacobian/m1, jacobian/spread, jacobian/s_max and the histogram jacobian/singular_values
JACOBIAN = "jacobian"
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
TRAIN_LOSS_EPOCH, TRAIN_ACC_EPOCH = "train/loss_epoch", "train/acc_epoch"
VAL_LOSS, VAL_ACC = "val/loss", "val/acc"  # at every validation
# with data.train_eval_size: the fixed training subset, evaluated at every validation
TRAIN_EVAL_LOSS, TRAIN_EVAL_ACC = "train/eval_loss", "train/eval_acc"
TEST_LOSS, TEST_ACC = "test/loss", "test/acc"  # once, with the record
VAL_AUC, DIVERGED = "val/auc", "train/diverged"  # with the record


def ends_a_run(tag: str) -> bool:
    """Whether ``tag`` is logged once, with a run's record (its test, the HPARAMS metrics, the
    session's end): what an extended run supersedes at its earlier end."""
    ended = (TEST_LOSS, TEST_ACC, VAL_AUC, DIVERGED, metadata.SESSION_END_INFO_TAG)
    return tag in ended or tag.startswith(steps_to_tag(""))


def steps_to_tag(threshold: str) -> str:
    """The tag of the first step at val accuracy >= ``threshold`` (a threshold key)."""
    return f"val/steps_to_{threshold}"


def layer_tag(quantity: str, layer: str) -> str:
    """The TensorBoard tag of a per-layer quantity: ``watch/<quantity>/<layer>``, so that one
    quantity's layers sit side by side (one group for all diagnostics, below train/val/test)."""
    return f"{LAYERS}/{quantity}/{layer}"


# -- what a run is, as hparams -----------------------------------------------------------------
def _plain(v: Any) -> str | float | bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return "null" if v is None else str(v)


def hparam_values(cfg: Mapping[str, Any]) -> dict[str, str | float | bool]:
    """The hparams of a run from its composed config (plain mappings): the groups' choices, the
    network, the init's and the optimizer's parameters (``init.gain``, ``optimizer.lr`` as
    ``lr``), batch, epochs, seed. One function for the sweep's domains and the run's session, so
    the two always agree."""
    from initlab.mlp import resolve_hidden_sizes  # torch: only when a run is described

    model = cfg["model"]
    hidden = resolve_hidden_sizes(model.get("depth"), model.get("width"), model.get("hidden_sizes"))
    optimizer = dict(cfg.get("optimizer") or {})
    target = str(optimizer.pop("_target_", "?"))
    optimizer.pop("_partial_", None)
    values: dict[str, Any] = {
        "init": cfg["init"]["name"],
        "norm": cfg["norm"]["name"],
        "depth": len(hidden),
        "widths": "-".join(map(str, hidden)),
        "activation": model["activation"],
        "residual": bool(model.get("residual", False)),
        "seed": cfg["seed"],
        "batch_size": cfg["data"]["batch_size"],
        "epochs": cfg["trainer"]["max_epochs"],
        "optimizer": target.rsplit(".", 1)[-1].lower(),
        "data": cfg["data"]["name"],
        "study": cfg.get("study"),
    }
    if values["residual"]:
        values["branch_layers"] = model["branch_layers"]
    values.update({f"init.{k}": v for k, v in cfg["init"].items() if k != "name"})
    values.update(
        {k if k in ("lr", "momentum") else f"optimizer.{k}": v for k, v in optimizer.items()}
    )
    return {k: _plain(v) for k, v in values.items()}


def metric_tags(thresholds: Iterable[float | str]) -> list[tuple[str, str, str]]:
    """(tag, display name, description) of the HPARAMS metrics, one steps column per
    threshold. TensorBoard takes each metric's last value in the run: test/acc and val/acc are the
    module's own scalars; the others are written once, at the run's end (``final_metrics``)."""
    out = [
        (TEST_ACC, "test acc", "final test accuracy (10,000 held-out images)"),
        (VAL_ACC, "val acc", "the last validation's accuracy"),
        (VAL_AUC, "val AUC", "mean val accuracy over training: fast and good"),
    ]
    for t in sorted({threshold_key(float(t)) for t in thresholds}, key=float):
        pct = f"{float(t) * 100:g}"
        out.append((steps_to_tag(t), f"steps to {pct}%", f"first step at val acc >= {t}"))
    out.append((DIVERGED, "diverged", "1: the training loss became NaN/inf, 0: it did not"))
    return out


def final_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The end-of-run scalars of HPARAMS' metrics, from the run's results record: val/auc,
    val/steps_to_<t> and train/diverged. A threshold it never reached and a value that is not
    finite are left out (a blank cell, not a 0)."""
    values: dict[str, Any] = {
        VAL_AUC: record.get("auc_val_acc"),
        DIVERGED: {"ok": 0.0, "diverged": 1.0}.get(record.get("status")),
    }
    for key, step in (record.get("steps_to_val_acc") or {}).items():
        values[steps_to_tag(key)] = step
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


def _value(v: str | float | bool) -> Any:
    if isinstance(v, bool):
        return struct_pb2.Value(bool_value=v)
    if isinstance(v, float):
        return struct_pb2.Value(number_value=v)
    return struct_pb2.Value(string_value=v)


def experiment_summary(
    jobs: Sequence[Mapping[str, str | float | bool]], metrics: Sequence[tuple[str, str, str]]
) -> Summary:
    """The hparams experiment of a sweep whose jobs have the hparam values ``jobs``: each hparam
    with the discrete domain of its values and ``differs`` when it has more than one; the ones
    that differ first (HPARAM_ORDER, then by name), the constants after."""
    names: dict[str, list] = {}
    for job in jobs:
        for k, v in job.items():
            if v not in names.setdefault(k, []):
                names[k].append(v)

    def order(name: str) -> tuple:
        known = HPARAM_ORDER.index(name) if name in HPARAM_ORDER else len(HPARAM_ORDER)
        return (len(names[name]) < 2, known, name)

    infos = []
    for name in sorted(names, key=order):
        values = names[name]
        kinds = {type(v) for v in values}
        if kinds == {float}:
            kind, domain = api_pb2.DATA_TYPE_FLOAT64, sorted(values)
        elif kinds == {bool}:
            kind, domain = api_pb2.DATA_TYPE_BOOL, sorted(values)
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


def session_start_summary(values: Mapping[str, str | float | bool], group_name: str) -> Summary:
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


def write_summaries(
    logdir: str | Path, summaries: Iterable[Summary], step: int = 0, suffix: str = ".initlab"
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


# -- the sweep's side (a Hydra callback) -------------------------------------------------------
EXPERIMENT_SUFFIX = ".initlab-experiment"  # the sweep root's event file of the experiment


def write_experiment(sweep_dir: str | Path, records: Sequence[Mapping[str, Any]]) -> Path | None:
    """Write the hparams experiment of the runs ``records`` (results.json records: their
    ``config`` says what each ran) and the custom-scalars layout into ``sweep_dir``, replacing
    an earlier one (TensorBoard keeps the first experiment it reads). None without a record that
    has a config."""
    configs = [r["config"] for r in records if isinstance(r.get("config"), Mapping)]
    if not configs:
        return None
    jobs = [hparam_values(c) for c in configs]
    thresholds = {t for c in configs for t in c.get("thresholds") or ()}
    sweep_dir = Path(sweep_dir)
    for old in sweep_dir.glob(f"events.out.tfevents.*{EXPERIMENT_SUFFIX}"):
        old.unlink()
    summaries = [experiment_summary(jobs, metric_tags(thresholds)), layout_summary()]
    return write_summaries(sweep_dir, summaries, suffix=EXPERIMENT_SUFFIX)
