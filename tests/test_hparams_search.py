"""hparams_search (Optuna's sweeper, the optuna extra): the preflight checks a search space by its
ends without running Optuna, and a search runs and writes Optuna's result.

The tests that need the plugin skip without it (``pip install -e '.[optuna]'``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from initlab.cli import BadInput, check, search_ends, sweep_jobs
from initlab.inits import INITS, init_parameters

from .conftest import CONF, run_train

SEARCHES = sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml"))
# the inits whose gain hparams_search=gain searches: those that take one
GAIN_INITS = sorted(name for name in INITS if "gain" in init_parameters(name))


def _plugin() -> None:
    pytest.importorskip(
        "hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra: pip install -e '.[optuna]'"
    )


def _ends(override: str) -> list[tuple[str, str | None]]:
    o = OverridesParser.create().parse_override(override)
    return [(e.line, e.inside) for e in search_ends(o)]


# -- the ends of a search space (no plugin needed) ------------------------------------------------
def test_interval_of_floats_excludes_its_upper_end():
    """Optuna 2 samples interval(a, b) in [a, b): the upper end is checked, and just below it
    when the end itself is refused."""
    below = math.nextafter(3.0, 0.5)
    assert _ends("init.gain=interval(0.5,3)") == [
        ("init.gain=0.5", None),
        ("init.gain=3.0", f"init.gain={below!r}"),
    ]
    assert _ends("optimizer.lr=tag(log,interval(1e-4,0.1))")[0] == ("optimizer.lr=0.0001", None)


def test_interval_of_integers_and_range_include_their_upper_end():
    assert _ends("model.depth=int(interval(2,8))") == [
        ("model.depth=2", None),
        ("model.depth=8", None),
    ]
    # as Optuna cuts a range: the last value start + k * step not above the stop, included
    assert _ends("model.depth=range(1,10,2)") == [("model.depth=1", None), ("model.depth=9", None)]
    assert _ends("model.depth=range(2,8,2)") == [("model.depth=2", None), ("model.depth=8", None)]
    assert _ends("init.gain=range(0.1,1,0.4)") == [("init.gain=0.1", None), ("init.gain=0.9", None)]
    assert _ends("init.gain=interval(2,2)") == [("init.gain=2.0", None)]  # one value


@pytest.mark.parametrize(
    "override",
    [
        "x=interval(0.5,3)",
        "x=tag(log,interval(1e-4,0.1))",
        "x=int(interval(2,8))",
        "x=int(tag(log,interval(1,64)))",
        "x=range(1,10,2)",
        "x=range(2,8,2)",
        "x=range(0.1,1,0.4)",
        "x=range(0.5,2,0.5)",
    ],
)
def test_the_ends_are_optunas(override):
    """The plugin's own distribution for the override has these ends, of its type."""
    _plugin()
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override

    parse = OverridesParser.create().parse_override
    dist = create_optuna_distribution_from_override(parse(override))
    low, high = (parse(e.line).value() for e in search_ends(parse(override)))
    assert (low, high) == (dist.low, dist.high)
    assert type(low) is type(high) is type(dist.low)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "optimizer.lr=tag(log,interval(0,1))",
            "optimizer.lr=tag(log,interval(0,1)): a log-scale interval needs a lower bound > 0",
        ),
        (
            "init.gain=interval(3,1)",
            "init.gain=interval(3,1): its lower bound 3.0 is above its upper bound 1.0",
        ),
        (
            "init.gain=interval(1,inf)",
            "init.gain=interval(1,inf): its upper bound must be a finite",
        ),
        (
            "model.depth=range(9,1)",
            "model.depth=range(9,1): a searched range goes up from its start",
        ),
    ],
)
def test_a_space_optuna_refuses_is_refused(override, expected):
    with pytest.raises(BadInput, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        search_ends(OverridesParser.create().parse_override(override))


def test_a_search_checks_every_choice_at_every_end():
    jobs = sweep_jobs(["norm=none,batchnorm", "init.gain=interval(0.5,3)"], True, search=True)
    assert jobs == [
        ["norm=none", "init.gain=0.5"],
        ["norm=none", "init.gain=3.0"],
        ["norm=batchnorm", "init.gain=0.5"],
        ["norm=batchnorm", "init.gain=3.0"],
    ]
    # the basic sweeper enumerates a range (its stop excluded) and refuses an interval
    assert sweep_jobs(["model.depth=range(2,8,2)"], True) == [
        [f"model.depth={d}"] for d in (2, 4, 6)
    ]


def test_the_basic_sweeper_refuses_an_interval():
    with pytest.raises(BadInput) as err:
        check(["-m", "init=xavier", "init.gain=interval(0.5,3)", "data=synthetic"], CONF, "train")
    assert str(err.value).startswith("init.gain=interval(0.5,3): the basic sweeper runs lists")
    assert "hydra/sweeper=optuna" in str(err.value)


def test_without_the_plugin_the_message_says_how_to_install_it(monkeypatch):
    """Without the plugin Hydra has no hydra/sweeper=optuna (removed here when it is installed)."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # discovery: an installed plugin stores its configs now
    sweepers = ConfigStore.instance().repo["hydra"]["sweeper"]
    if "optuna.yaml" in sweepers:
        monkeypatch.delitem(sweepers, "optuna.yaml")
    with pytest.raises(BadInput) as err:
        check(["-m", "hparams_search=gain", "data=synthetic"], CONF, "train")
    assert str(err.value) == (
        "hydra/sweeper=optuna needs the Optuna sweeper plugin, which is not installed: "
        "pip install -e '.[optuna]' (hydra-optuna-sweeper)"
    )


# -- the preflight of a search (the plugin composes hydra/sweeper=optuna) -------------------------
def test_there_are_searches():
    assert "gain" in SEARCHES
    assert GAIN_INITS == ["orthogonal", "xavier", "xavier_normal"]


@pytest.mark.parametrize("name", SEARCHES)
def test_every_search_passes_preflight_with_or_without_m(name):
    _plugin()
    check(["-m", f"hparams_search={name}", "debug=smoke"], CONF, "train")
    check([f"hparams_search={name}", "debug=smoke"], CONF, "train")  # hydra.mode: MULTIRUN


@pytest.mark.parametrize("init", GAIN_INITS)
def test_the_gain_search_runs_with_every_init_that_takes_a_gain(init):
    _plugin()
    check(["hparams_search=gain", f"init={init}", "model.depth=8", "data=synthetic"], CONF, "train")


@pytest.mark.parametrize(
    "argv",
    [
        ["init=xavier", "init.gain=interval(0.5,3.0)"],
        ["optimizer.lr=tag(log,interval(1e-4,1))", "model.depth=int(interval(1,8))"],
        ["optimizer.momentum=interval(0.5,1)"],  # 1 is excluded: 0.999... is checked
        ["norm=choice(none,batchnorm)", "data.batch_size=int(interval(2,256))"],
        ["model.depth=range(2,34,4)", "init=choice(xavier,orthogonal)"],
    ],
)
def test_preflight_accepts_a_good_search(argv):
    _plugin()
    check(["-m", "hydra/sweeper=optuna", *argv, "data=synthetic"], CONF, "train")


BAD_BOUNDS = [
    (
        ["init=xavier", "init.gain=interval(-1,3)"],
        "init.gain=interval(-1,3) at its lower bound: init.gain=-1.0 must be a number > 0",
    ),
    (
        ["optimizer.lr=interval(0,1)"],
        "optimizer.lr=interval(0,1) at its lower bound: optimizer.lr=0.0 must be a number > 0",
    ),
    (
        ["optimizer.momentum=interval(0.5,1.5)"],
        "optimizer.momentum=interval(0.5,1.5) at its upper bound: "
        "optimizer.momentum=1.5 must be a number in [0, 1)",
    ),
    (
        ["model.depth=int(interval(0,8))"],
        "model.depth=int(interval(0,8)) at its lower bound: "
        "model.depth=0 must be a positive integer (or null: 2, or len(hidden_sizes))",
    ),
    (
        ["model.depth=interval(2,8)"],
        "model.depth=interval(2,8) (it samples floats; int(interval(2,8)) samples integers) at "
        "its lower bound: model.depth=2.0 must be a positive integer "
        "(or null: 2, or len(hidden_sizes))",
    ),
    (  # valid alone, not with one of the choices
        ["norm=choice(none,batchnorm)", "data.batch_size=int(interval(1,64))"],
        "data.batch_size=int(interval(1,64)) at its lower bound: data.batch_size=1 must be at "
        "least 2 with norm=batchnorm (batch statistics need two samples)",
    ),
    (  # the search's own interval, for an init without a gain
        ["hparams_search=gain", "init=he"],
        "init.gain=tag(log, interval(0.25, 4.0)) at its lower bound: init.gain is not a key",
    ),
    (  # a bad choice is the choice's, not the ends'
        ["norm=choice(none,groupnorm)", "init=xavier", "init.gain=interval(1,2)"],
        "norm=groupnorm is not an option",
    ),
    (  # the machine: what the model needs at the upper end
        ["model.width=int(interval(64,200000))", "model.depth=40"],
        "model.width=int(interval(64,200000)) at its upper bound: the model needs about",
    ),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_BOUNDS, ids=[" ".join(a) for a, _ in BAD_BOUNDS])
def test_preflight_refuses_a_bad_bound_with_one_line(argv, expected):
    _plugin()
    with pytest.raises(BadInput) as err:
        check(["-m", "hydra/sweeper=optuna", *argv, "data=synthetic"], CONF, "train")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(expected), message


def test_cli_bad_bound_exit_2_one_line_nothing_written(tmp_path):
    _plugin()
    out = tmp_path / "sweep"
    proc = run_train(
        [
            "hparams_search=gain",
            "init.gain=interval(-1,3)",
            "debug=smoke",
            f"hydra.sweep.dir={out}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "initlab: error: init.gain=interval(-1,3) at its lower bound: "
        "init.gain=-1.0 must be a number > 0"
    )
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


# -- a search, end to end -------------------------------------------------------------------------
def test_gain_search_runs_its_trials_and_writes_optunas_result(tmp_path):
    """Three trials of hparams_search=gain on a few synthetic batches: each a run with its
    results.json, and optimization_results.yaml with the best of them (what train.py returned:
    the final val accuracy, maximized)."""
    _plugin()
    sweep = tmp_path / "sweep"
    argv = [
        "-m",
        "hparams_search=gain",
        "debug=smoke",
        "hydra.sweeper.n_trials=3",
        "diagnostics=off",
    ]
    proc = run_train([*argv, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert len(records) == 3
    assert all(r["status"] == "ok" for r in records)
    gains = [r["config"]["init"]["gain"] for r in records]
    assert len(set(gains)) == 3 and all(0.25 <= g < 4.0 for g in gains)
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(records, key=lambda r: r["final"]["val_acc"])
    assert result["name"] == "optuna"
    assert result["best_value"] == best["final"]["val_acc"]
    assert result["best_params"] == {"init.gain": best["config"]["init"]["gain"]}
    assert "sweep finished: 3 ok" in proc.stdout + proc.stderr
    assert Path(sweep / "summary.md").exists()
