"""The TensorBoard dashboard (initlab.dashboard), checked through a real TensorBoard server's HTTP
data API on a small sweep: what TensorBoard opens first, HPARAMS columns and their `differs`, the
metrics of every run, run names, the custom-scalars layout; and the HPARAMS session of a run that
fell back to the embedded digits."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
from functools import cmp_to_key, partial
from pathlib import Path

import pytest
import torch
import yaml
from google.protobuf import json_format
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from initlab.config import INIT_RULES, POS_INT
from initlab.dashboard import (
    DIVERGED,
    EXPERIMENT_SUFFIX,
    INT_HPARAMS,
    TEST_ACC,
    VAL_ACC,
    VAL_AUC,
    _value,
    experiment_summary,
    final_metrics,
    hparam_values,
    metric_tags,
    steps_to_tag,
    write_experiment,
)
from initlab.data import EMBEDDED_NAME

from .conftest import FAST, compose_train, run_train

SGD = partial(torch.optim.SGD, lr=0.01, momentum=0.5)


def _experiment(summary):
    return metadata.parse_experiment_plugin_data(summary.value[0].metadata.plugin_data.content)


def test_experiment_lists_swept_hparams_first_with_their_domains():
    """In TensorBoard's own order (differing first, then by name); an integer hparam as text, in
    number order (2 before 16), which HPARAMS shows as 2, not 2.0000."""
    jobs = [
        {"init": i, "norm": "none", "seed": s, "depth": d, "lr": 0.01}
        for i in ("he", "zero")
        for s in (0, 1)
        for d in (16, 2)
    ]
    exp = _experiment(experiment_summary(jobs, metric_tags([0.9, 0.95])))
    infos = [(h.name, h.differs) for h in exp.hparam_infos]
    assert infos == [
        ("depth", True),
        ("init", True),
        ("seed", True),
        ("lr", False),
        ("norm", False),
    ]
    depth, init = exp.hparam_infos[0], exp.hparam_infos[1]
    assert [v.string_value for v in init.domain_discrete.values] == ["he", "zero"]
    shown = [v.string_value for v in depth.domain_discrete.values]
    assert [v.strip() for v in shown] == ["2", "16"] and shown == sorted(shown)  # text order too
    assert [v.number_value for v in exp.hparam_infos[3].domain_discrete.values] == [0.01]
    tags = [m.name.tag for m in exp.metric_infos]
    assert tags == [
        TEST_ACC,
        VAL_ACC,
        VAL_AUC,
        steps_to_tag("0.90"),
        steps_to_tag("0.95"),
        DIVERGED,
    ]
    steps = exp.metric_infos[3].description
    assert "never reached" in steps and "budget in steps + 1" in steps


def test_final_metrics_censor_a_threshold_never_reached_at_the_budget():
    """Every run has every HPARAMS metric (parallel coordinates leave out one that lacks one):
    a threshold never reached is its budget in steps + 1; results.json's null stays null."""
    record = {
        "status": "diverged",
        "final": {"test_acc": 0.1, "val_acc": None},
        "auc_val_acc": 0.2,
        "budget": {"steps": 860, "steps_per_epoch": 860, "epochs": 1},
        "steps_to_val_acc": {"0.90": 300, "0.95": None},
    }
    assert final_metrics(record) == {
        VAL_AUC: 0.2,
        DIVERGED: 1.0,
        steps_to_tag("0.90"): 300.0,
        steps_to_tag("0.95"): 861.0,
    }
    assert record["steps_to_val_acc"]["0.95"] is None
    assert VAL_AUC not in final_metrics({**record, "auc_val_acc": float("nan")})


def _record(run_dir: Path, **changes) -> dict:
    """A results record, as results.json holds it, of a run in ``run_dir``."""
    cfg = compose_train(["data=synthetic", "init=lsuv"])
    config = OmegaConf.to_container(cfg, resolve=True)
    record = {
        "status": "ok",
        "init": "lsuv",
        "init_params": {k: v for k, v in config["init"].items() if k != "name"},
        "norm": "none",
        "activation": "relu",
        "depth": 2,
        "hidden_sizes": [512, 256],
        "seed": 0,
        "batch_size": 64,
        "max_epochs": 1,
        "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.5},
        "dataset": {"name": EMBEDDED_NAME},
        "study": None,
        "config": config,
        "_path": str(run_dir / "results.json"),
        **changes,
    }
    return record


def test_hparams_state_the_record_and_integers_as_integers(tmp_path):
    """The hparams are what the record states (the dataset read, not the one configured); an
    integer setting is an int, any other number a float (init.gain=2 typed without a point)."""
    record = _record(tmp_path, init_params={"max_iter": 10, "tol": 1, "gain": 2})
    assert record["config"]["data"]["name"] == "synthetic"
    values = hparam_values(record)
    assert values["data"] == EMBEDDED_NAME
    assert {k: values[k] for k in ("depth", "seed", "batch_size", "epochs")} == {
        "depth": 2,
        "seed": 0,
        "batch_size": 64,
        "epochs": 1,
    }
    assert all(type(values[k]) is int for k in ("depth", "seed", "batch_size", "epochs"))
    assert type(values["init.max_iter"]) is int and type(values["init.gain"]) is float
    assert type(values["lr"]) is float and values["widths"] == "512-256"
    assert _value(values["depth"]).string_value.strip() == "2"


def test_the_residual_hparams_are_the_nets_the_record_states(tmp_path):
    """residual and branch_layers as the record says the net was built (its config asked for
    none of it here); a record from before it said so: as its config asked."""
    built = hparam_values(_record(tmp_path, branch_layers=3))
    assert built["residual"] is True and built["branch_layers"] == 3
    plain = hparam_values(_record(tmp_path, branch_layers=None))
    assert plain["residual"] is False and "branch_layers" not in plain
    older = _record(tmp_path)
    older["config"]["model"].update(residual=True, branch_layers=2)
    assert hparam_values(older)["branch_layers"] == 2


def test_integer_hparams_cover_the_configs_integer_init_parameters():
    """initlab.config declares which init parameters are integers; each one is shown as one."""
    ints = {f"init.{k}" for k, (allowed, _) in INIT_RULES.items() if allowed == POS_INT}
    assert ints and ints <= INT_HPARAMS


def test_experiment_goes_into_a_run_dir_and_replaces_the_earlier(tmp_path):
    """No event file at the sweep's root (TensorBoard would list it as a run named "."): the
    experiment is in the first run's dir, and a rewrite leaves one experiment below the sweep."""
    runs = [tmp_path / "init=he", tmp_path / "init=zero"]
    records = [_record(d, init=d.name.split("=")[1], seed=i) for i, d in enumerate(runs)]
    (tmp_path / f"events.out.tfevents.1.x{EXPERIMENT_SUFFIX}").write_bytes(b"")  # an older one
    for _ in range(2):
        assert write_experiment(tmp_path, records) == runs[0]
    assert not list(tmp_path.glob("events.out.tfevents.*"))
    (found,) = tmp_path.rglob(f"*{EXPERIMENT_SUFFIX}")
    ea = EventAccumulator(str(found.parent))
    ea.Reload()
    exp = metadata.parse_experiment_plugin_data(
        ea.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG]
    )
    assert [h.name for h in exp.hparam_infos if h.differs] == ["init", "seed"]
    csv_only = [_record(d, config={**r["config"], "logger": {"type": "csv", "subdir": None}})
                for d, r in zip(runs, records, strict=True)]  # fmt: skip
    assert write_experiment(tmp_path, csv_only) is None  # no session: no experiment
    assert not list(tmp_path.rglob(f"*{EXPERIMENT_SUFFIX}"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "X-XSRF-Protected": "1"}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=20) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A 2 x 2 sweep on synthetic data (zero init never reaches a threshold), served by a real
    `tensorboard` process: (its address, the sweep dir)."""
    root = tmp_path_factory.mktemp("dashboard")
    sweep = root / "sweep"
    args = ["-m", "init=zero,xavier", "model.depth=2,10", *FAST, f"hydra.sweep.dir={sweep}"]
    proc = run_train(args, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep), "--port", str(port),
         "--host", "127.0.0.1", "--reload_interval", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if _get(f"{base}/data/runs"):
                break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"tensorboard did not serve {sweep}: {server.stderr.read()[-2000:]}")
        time.sleep(0.5)
    yield base, sweep
    server.terminate()
    server.wait(timeout=10)


def test_hparams_tab_shows_the_swept_axes_as_differing(served):
    base, _ = served
    exp = _get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = exp["hparamInfos"]
    differing = [h["name"] for h in infos if h.get("differs")]
    assert differing == ["depth", "init", "widths"]  # the swept axes (and the widths), first
    assert not any(h.get("differs") for h in infos[3:])
    by_name = {h["name"]: h for h in infos}
    assert by_name["init"]["domainDiscrete"] == ["xavier", "zero"]
    # integers as text (HPARAMS shows 10, not 10.000), in number order: 2 before 10
    assert [v.strip() for v in by_name["depth"]["domainDiscrete"]] == ["2", "10"]
    assert {"seed", "lr", "batch_size", "epochs"} <= set(by_name)
    assert by_name["data"]["domainDiscrete"] == ["synthetic"]
    metrics = [m["name"]["tag"] for m in exp["metricInfos"]]
    assert metrics[:3] == [TEST_ACC, VAL_ACC, VAL_AUC]
    assert {steps_to_tag("0.90"), steps_to_tag("0.97"), DIVERGED} <= set(metrics)


def test_every_run_has_every_hparams_metric(served):
    """Parallel coordinates and the scatter plot leave out a run that lacks a metric: every
    session has every metric of the experiment, a threshold never reached censored at the run's
    budget in steps + 1 (13 steps here)."""
    base, _ = served
    exp = _get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
    metrics = [m["name"] for m in exp["metricInfos"]]
    request = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [
            *({"hparam": h["name"], "includeInResult": True} for h in exp["hparamInfos"]),
            *({"metric": m, "includeInResult": True} for m in metrics),
        ],
        "startIndex": 0,
        "sliceSize": 100,
    }
    groups = _get(f"{base}/data/plugin/hparams/session_groups", request)["sessionGroups"]
    assert len(groups) == 4
    # parallel coordinates sort an axis of text values as text: that is number order here
    depths = [group["hparams"]["depth"] for group in groups]
    assert sorted(depths) == sorted(depths, key=int) and {d.strip() for d in depths} == {"2", "10"}
    for group in groups:
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert set(values) == {m["tag"] for m in metrics}, group["name"]
        assert all(isinstance(v, float) and math.isfinite(v) for v in values.values())
        if group["hparams"]["init"] == "zero":
            assert values[steps_to_tag("0.90")] == 14.0  # never: 13 + 1


def _run(runs, init: str, depth: int) -> str:
    (name,) = [r for r in runs if {f"init={init}", f"model.depth={depth}"} <= set(r.split(","))]
    return name


def test_runs_are_named_by_their_overrides_and_none_is_named_dot(served):
    base, sweep = served
    runs = _get(f"{base}/data/runs")
    for init in ("zero", "xavier"):
        for depth in (2, 10):
            assert "/" not in _run(runs, init, depth)  # the job dir itself, no /tensorboard
    assert len(runs) == 4 and "." not in runs  # nothing at the sweep's root
    assert not list(sweep.glob("events.out.tfevents.*"))
    assert len(list(sweep.rglob(f"events.out.tfevents.*{EXPERIMENT_SUFFIX}"))) == 1


def _tensorboard_order(a: str, b: str) -> int:
    """TensorBoard 2.21's order of tag names (compareTagNames in its web bundle, for integers):
    digit runs compared as numbers, '/' and digits before any other character."""
    i = j = 0
    while True:
        if i == len(a):
            return 0 if j == len(b) else -1
        if j == len(b):
            return 1
        if a[i].isdigit() and b[j].isdigit():
            ni, nj = i, j
            while ni < len(a) and a[ni].isdigit():
                ni += 1
            while nj < len(b) and b[nj].isdigit():
                nj += 1
            x, y = int(a[i:ni]), int(b[j:nj])
            if x != y:
                return -1 if x < y else 1
            i, j = ni, nj
            continue
        early_a, early_b = a[i] == "/" or a[i].isdigit(), b[j] == "/" or b[j].isdigit()
        if early_a != early_b:
            return -1 if early_a else 1
        if a[i] != b[j]:
            return -1 if a[i] < b[j] else 1
        i, j = i + 1, j + 1


def test_tensorboard_opens_on_the_curves(served):
    """Time Series and Scalars sort every tag (TensorBoard's order), group them by the part
    before the first '/', and open the first two groups only (Time Series: the first two of
    its card groups; Scalars: _shouldOpen(index) = index <= 2, index 0 the search results):
    those are train/ and val/, and every tag in them is a curve. Every tag that is one point in
    a run (its test, the HPARAMS metrics, a one-epoch run's epoch means) is in a later group."""
    base, _ = served
    scalars = _get(f"{base}/data/plugin/scalars/tags")
    histograms = _get(f"{base}/data/plugin/histograms/tags")
    tags = {t for per_run in (*scalars.values(), *histograms.values()) for t in per_run}
    groups = list(
        dict.fromkeys(t.split("/")[0] for t in sorted(tags, key=cmp_to_key(_tensorboard_order)))
    )
    assert groups[:2] == ["train", "val"], groups
    assert set(groups) == {"train", "val", "watch", "z_epoch", "z_final"}  # nothing else
    for run, run_tags in scalars.items():
        for tag in run_tags:
            query = urllib.parse.urlencode({"run": run, "tag": tag})
            points = _get(f"{base}/data/plugin/scalars/scalars?{query}")
            if tag.split("/")[0] in groups[:2]:
                assert len(points) > 1, (run, tag)  # a line
            if len(points) == 1:
                assert groups.index(tag.split("/")[0]) >= 3, (run, tag)
            if tag.startswith("z_final/"):
                assert len(points) == 1  # the final value at the last step, no 0.0 at step 0
    run_tags = scalars[_run(list(scalars), "xavier", 2)]
    assert "watch/preact_q/fc1" in run_tags and "watch/grad_preact_ratio/fc2" in run_tags
    assert "watch/jacobian/m1" in run_tags


def test_custom_scalars_layout(served):
    base, _ = served
    layout = _get(f"{base}/data/plugin/custom_scalars/layout")
    titles = [c["title"] for c in layout["category"]]
    assert titles == ["Accuracy and loss", "Layers (one line per layer)"]
    charts = {c["title"]: c["multiline"]["tag"] for c in layout["category"][0]["chart"]}
    assert charts["val accuracy"] == ["^val/acc$"] and charts["train loss"] == ["^train/loss$"]
    layer_charts = [c["multiline"]["tag"][0] for c in layout["category"][1]["chart"]]
    assert "^watch/grad_preact_q/" in layer_charts and "^watch/dead_fraction/" in layer_charts


# -- a run extended: one end ---------------------------------------------------------------------
def _scalar_events(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def test_an_extended_run_logs_one_end_as_the_longer_run_does(tmp_path):
    """The values a run logs once, at its end, are superseded when it is extended: its events
    equal those of the run that had the larger budget from the start, and an end logged under
    an earlier initlab's name (test/acc) goes too, rather than linger in a group that opens."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    from initlab.dashboard import write_summaries
    from initlab.run import run

    common = [*FAST, "diagnostics=off"]
    run(compose_train([*common, "trainer.max_epochs=1"]), tmp_path / "extended", SGD)
    earlier = Summary(value=[Summary.Value(tag="test/acc", simple_value=0.5)])
    write_summaries(tmp_path / "extended", [earlier], step=13)  # the earlier end's step
    run(compose_train([*common, "trainer.max_epochs=2"]), tmp_path / "extended", SGD)
    run(compose_train([*common, "trainer.max_epochs=2"]), tmp_path / "fresh", SGD)
    extended, fresh = (_scalar_events(tmp_path / d) for d in ("extended", "fresh"))
    assert extended == fresh
    assert [step for step, _ in extended[TEST_ACC]] == [26]
    # its HPARAMS session states the new budget, as the longer run's does
    sessions = {d: _session(tmp_path / d) for d in ("extended", "fresh")}
    assert sessions["extended"] == sessions["fresh"]
    assert sessions["fresh"]["epochs"].strip() == "2"  # integers: right-aligned strings


def _session(logdir: Path) -> dict:
    """The hparams of the HPARAMS session TensorBoard reads in ``logdir``."""
    ea = EventAccumulator(str(logdir))
    ea.Reload()
    content = ea.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    hparams = metadata.parse_session_start_info_plugin_data(content).hparams
    return {k: json_format.MessageToDict(v) for k, v in hparams.items()}


# -- a run that fell back to the embedded digits ------------------------------------------------
OFFLINE_RUN = [
    "data.download=false",
    "data.fallback=true",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=4",
    "trainer.val_check_interval=2",
    "diagnostics=off",
    "progress_bar=false",
]


@pytest.mark.parametrize("logger", ["tensorboard", "csv"])
def test_an_offline_run_states_the_dataset_it_read(tmp_path_factory, logger):
    """MNIST missing and no download: the run reads the embedded 5,000 digits, and its HPARAMS
    session (or hparams.yaml) names them as results.json does, with the values the sweep's
    experiment computes from that results.json (one source), not the configured data.name."""
    from initlab.run import run

    data_root = tmp_path_factory.getbasetemp() / "offline-mnist"  # the parsed digits, cached once
    out = tmp_path_factory.mktemp(f"offline-{logger}")
    cfg = compose_train([f"data.root={data_root}", f"logger={logger}", *OFFLINE_RUN])
    assert cfg.data.name == "mnist"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*FALLING BACK")
        run(cfg, out, SGD)
    saved = json.loads((out / "results.json").read_text())
    assert saved["dataset"]["name"] == EMBEDDED_NAME
    expected = hparam_values(saved)
    if logger == "csv":
        stated = yaml.safe_load((out / "hparams.yaml").read_text())
        assert stated["data"] == EMBEDDED_NAME and stated == expected
    else:
        ea = EventAccumulator(str(out))
        ea.Reload()
        content = ea.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
        stated = dict(metadata.parse_session_start_info_plugin_data(content).hparams)
        assert stated["data"].string_value == EMBEDDED_NAME
        assert stated == {k: _value(v) for k, v in expected.items()}
    assert expected["data"] == EMBEDDED_NAME and expected["depth"] == 2


def test_single_run_dir_is_named_by_its_overrides():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import hydra_plugins.initlab_launchers.conf_schema  # noqa: F401  (the resolvers)

    from .conftest import CONF

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["init=xavier", "data.root=/x"], return_hydra_config=True)
        smoke = compose(
            "train", overrides=["experiment=depth", "debug=smoke"], return_hydra_config=True
        )
    assert Path(cfg.hydra.run.dir).name.endswith("_init=xavier")  # data.root: bookkeeping, left out
    assert Path(smoke.hydra.sweep.dir).name.endswith("_experiment=depth,debug=smoke")
