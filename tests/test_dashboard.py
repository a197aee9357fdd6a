"""The TensorBoard dashboard (initlab.dashboard), checked through a real TensorBoard server's HTTP
data API on a small sweep: HPARAMS columns and their `differs`, the metrics, run names, the
custom-scalars layout, the tag list."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from tensorboard.plugins.hparams import metadata

from initlab.dashboard import experiment_summary, final_metrics, metric_tags

from .conftest import FAST, run_train


def _experiment(summary):
    return metadata.parse_experiment_plugin_data(summary.value[0].metadata.plugin_data.content)


def test_experiment_lists_swept_hparams_first_with_their_domains():
    jobs = [
        {"init": i, "norm": "none", "seed": float(s), "lr": 0.01}
        for i in ("he", "zero")
        for s in (0, 1)
    ]
    exp = _experiment(experiment_summary(jobs, metric_tags([0.9, 0.95])))
    infos = [(h.name, h.differs) for h in exp.hparam_infos]
    assert infos == [("init", True), ("seed", True), ("norm", False), ("lr", False)]
    init = exp.hparam_infos[0]
    assert [v.string_value for v in init.domain_discrete.values] == ["he", "zero"]
    assert [v.number_value for v in exp.hparam_infos[1].domain_discrete.values] == [0.0, 1.0]
    tags = [m.name.tag for m in exp.metric_infos]
    assert tags == [
        "test/acc",
        "val/acc",
        "val/auc",
        "val/steps_to_0.90",
        "val/steps_to_0.95",
        "train/diverged",
    ]


def test_final_metrics_leave_out_what_a_run_does_not_have():
    record = {
        "status": "diverged",
        "final": {"test_acc": 0.1, "val_acc": None},
        "auc_val_acc": 0.2,
        "steps_to_val_acc": {"0.90": 300, "0.95": None},
    }
    assert final_metrics(record) == {
        "val/auc": 0.2,
        "train/diverged": 1.0,
        "val/steps_to_0.90": 300.0,
    }


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
    """A 2 x 2 sweep on synthetic data, served by a real `tensorboard` process."""
    root = tmp_path_factory.mktemp("dashboard")
    sweep = root / "sweep"
    args = ["-m", "init=zero,xavier", "norm=none,batchnorm", *FAST, f"hydra.sweep.dir={sweep}"]
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
    yield base
    server.terminate()
    server.wait(timeout=10)


def test_hparams_tab_shows_the_swept_axes_as_differing(served):
    exp = _get(f"{served}/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = exp["hparamInfos"]
    differing = [h["name"] for h in infos if h.get("differs")]
    assert differing == ["init", "norm"]  # the swept axes, first
    assert not any(h.get("differs") for h in infos[2:])
    by_name = {h["name"]: h for h in infos}
    assert by_name["init"]["domainDiscrete"] == ["xavier", "zero"]
    assert {"depth", "widths", "seed", "lr", "batch_size"} <= set(by_name)
    metrics = [m["name"]["tag"] for m in exp["metricInfos"]]
    assert metrics[:3] == ["test/acc", "val/acc", "val/auc"]
    assert {"val/steps_to_0.90", "val/steps_to_0.97", "train/diverged"} <= set(metrics)


def _run(runs, init: str, norm: str) -> str:
    (name,) = [r for r in runs if {f"init={init}", f"norm={norm}"} <= set(r.split(","))]
    return name


def test_runs_are_named_by_their_overrides(served):
    runs = _get(f"{served}/data/runs")
    for init in ("zero", "xavier"):
        for norm in ("none", "batchnorm"):
            assert "/" not in _run(runs, init, norm)  # the job dir itself, no /tensorboard
    assert "." in runs  # the sweep root: the experiment and the layout


def test_tags_are_grouped_and_have_no_placeholders(served):
    run = _run(_get(f"{served}/data/runs"), "xavier", "batchnorm")
    run_tags = _get(f"{served}/data/plugin/scalars/tags")[run]
    groups = {t.split("/")[0] for t in run_tags}
    assert groups == {"train", "val", "test", "watch"}  # no per-layer groups, no epoch
    assert "watch/preact_q/fc1" in run_tags and "watch/grad_preact_ratio/fc2" in run_tags
    query = urllib.parse.urlencode({"run": run, "tag": "val/auc"})
    points = _get(f"{served}/data/plugin/scalars/scalars?{query}")
    assert len(points) == 1  # the final value at the last step, no 0.0 at step 0


def test_custom_scalars_layout(served):
    layout = _get(f"{served}/data/plugin/custom_scalars/layout")
    titles = [c["title"] for c in layout["category"]]
    assert titles == ["Accuracy and loss", "Layers (one line per layer)"]
    charts = {c["title"]: c["multiline"]["tag"] for c in layout["category"][0]["chart"]}
    assert charts["val accuracy"] == ["^val/acc$"] and charts["train loss"] == ["^train/loss$"]
    layer_charts = [c["multiline"]["tag"][0] for c in layout["category"][1]["chart"]]
    assert "^watch/grad_preact_q/" in layer_charts and "^watch/dead_fraction/" in layer_charts


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
