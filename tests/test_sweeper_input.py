"""Bad input to Hydra's sweepers that got past the preflight: a setting of the sweeper itself
(``hydra.sweeper.*``: Optuna's n_trials, n_jobs, direction, sampler, storage, ...; the basic
sweeper's max_batch_size), a grid written on the command line in a way Hydra refuses or
misreads (``hydra.sweeper.params.<key>=...``), and an experiment's grid dropped without -m.

Each is refused by the preflight like any bad input: one line naming the setting, the value and
what is allowed (or how to write it), exit status 2, nothing written. Before, they ended in a
traceback or exit status 1, some after Hydra made the sweep dir (``n_jobs=0``), or ran one job
in silence (``experiment=tutorial`` without -m). The ranges are declared once, in
``initlab.config`` (``OptunaSweeperConf``, ``BasicSweeperConf``)."""

from __future__ import annotations

import sqlite3

import pytest

from initlab.cli import BadInput, check

from .conftest import CONF, run_train


def _plugin() -> None:
    pytest.importorskip(
        "hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra: pip install -e '.[optuna]'"
    )


def _refused(argv: list[str]) -> str:
    with pytest.raises(BadInput) as err:
        check([*argv, "debug=smoke"], CONF, "train")
    message = str(err.value)
    assert "\n" not in message
    return message


# -- a setting of Optuna's sweeper ----------------------------------------------------------------
OPTUNA = [
    ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0 must be a positive integer"),
    ("hydra.sweeper.n_trials=-1", "hydra.sweeper.n_trials=-1 must be a positive integer"),
    ("hydra.sweeper.n_trials=x", "hydra.sweeper.n_trials='x' must be a positive integer"),
    ("hydra.sweeper.n_jobs=0", "hydra.sweeper.n_jobs=0 must be a positive integer"),
    (
        "hydra.sweeper.direction=sideways",
        "hydra.sweeper.direction='sideways' must be minimize or maximize",
    ),
    (  # train.py returns one value: a multi-objective study fails every trial
        "hydra.sweeper.direction=[maximize,minimize]",
        "hydra.sweeper.direction=['maximize', 'minimize'] must be minimize or maximize (one:",
    ),
    ("hydra.sweeper.max_failure_rate=2", "hydra.sweeper.max_failure_rate=2.0 must be a number in"),
    (
        "hydra.sweeper.sampler.seed=-1",
        "hydra.sweeper.sampler.seed=-1 must be an integer in [0, 4294967295], or null",
    ),
    (
        "hydra.sweeper.sampler.seed=4294967296",
        "hydra.sweeper.sampler.seed=4294967296 must be an integer in [0, 4294967295]",
    ),
    ("hydra.sweeper.sampler.seed=1.5", "hydra.sweeper.sampler.seed=1.5 must be an integer in"),
    ("hydra.sweeper.sampler.n_ei_candidates=0", "hydra.sweeper.sampler.n_ei_candidates=0 must"),
    ("hydra.sweeper.sampler.prior_weight=0", "hydra.sweeper.sampler.prior_weight=0.0 must be"),
    (
        "hydra.sweeper.sampler._target_=optuna.samplers.TPESamplr",
        "hydra.sweeper.sampler._target_='optuna.samplers.TPESamplr' must be one of",
    ),
    (
        "hydra.sweeper.storage=foo",
        "hydra.sweeper.storage='foo' must be a database URL, e.g. sqlite",
    ),
    (
        "hydra.sweeper.storage=postgresql+nodriver://u@h/db",
        "hydra.sweeper.storage='postgresql+nodriver://u@h/db' must be a database URL",
    ),
    (
        "hydra.sweeper.storage=sqlite:///no/such/dir/gain.db",
        "hydra.sweeper.storage='sqlite:///no/such/dir/gain.db': the directory no/such/dir does "
        "not exist (sqlite creates the file, not its directory)",
    ),
    (
        "hydra.sweeper.custom_search_space=no.such.function",
        "hydra.sweeper.custom_search_space='no.such.function' must be the path of a function",
    ),
    (  # a misspelt setting: the keys of Optuna's sweeper, not the basic one's
        "hydra.sweeper.n_trial=5",
        "hydra.sweeper.n_trial is not a key of 'hydra.sweeper' (it has: sampler, _target_, "
        "direction, storage, study_name, n_trials,",
    ),
    ("hydra.sweeper.n_trials=3,4", "hydra.sweeper.n_trials=3,4 gives a list to a setting of"),
]


@pytest.mark.parametrize(("setting", "expected"), OPTUNA, ids=[s for s, _ in OPTUNA])
def test_a_bad_setting_of_optunas_sweeper_is_refused_with_one_line(setting, expected):
    _plugin()
    message = _refused(["hparams_search=gain", setting])
    assert message.startswith(expected), message


def test_a_study_stored_with_the_other_direction_is_refused(tmp_path):
    """Optuna refuses to change a stored study's direction (a ValueError mid-sweep): the study
    in the sqlite file is read (read-only) and named."""
    _plugin()
    db = tmp_path / "gain.db"
    with sqlite3.connect(db) as con:  # the two tables of Optuna's schema that say it
        con.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name TEXT)")
        con.execute("CREATE TABLE study_directions (direction TEXT, study_id INT, objective INT)")
        con.execute("INSERT INTO studies VALUES (1, 'gain')")
        con.execute("INSERT INTO study_directions VALUES ('MINIMIZE', 1, 0)")
    before = db.read_bytes()
    storage = [f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=gain"]
    message = _refused(["hparams_search=gain", *storage])
    assert message == (
        f"hydra.sweeper.study_name='gain' is a study in sqlite:///{db} that minimizes, not "
        "maximizes (hydra.sweeper.direction): give another study_name, or its direction"
    )
    assert db.read_bytes() == before
    # the same direction: accepted (another study_name too: no study to disagree with)
    same = [*storage, "hydra.sweeper.direction=minimize", "debug=smoke"]
    check(["hparams_search=gain", *same], CONF, "train", runs=False)


def test_good_settings_of_optunas_sweeper_pass(tmp_path):
    _plugin()
    good = [
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.n_jobs=4",
        "hydra.sweeper.direction=minimize",
        "hydra.sweeper.sampler.seed=null",
        "hydra.sweeper.max_failure_rate=0.5",
        f"hydra.sweeper.storage=sqlite:///{tmp_path}/gain.db",
        "hydra.sweeper.study_name=gain",
    ]
    check(["hparams_search=gain", *good, "debug=smoke"], CONF, "train", runs=False)
    assert list(tmp_path.iterdir()) == []  # the storage is not created by the check


def test_a_bad_setting_of_the_basic_sweeper_is_refused():
    message = _refused(["-m", "seed=0,1", "hydra.sweeper.max_batch_size=0"])
    assert message.startswith("hydra.sweeper.max_batch_size=0 must be a positive integer")


# -- a grid on the command line (hydra.sweeper.params.<key>) --------------------------------------
PARAMS = [
    (  # a list not quoted: Hydra sweeps none of its own settings
        ["hydra.sweeper.params.seed=0,-1"],
        "hydra.sweeper.params.seed=0,-1 gives a list to a setting of Hydra's, which Hydra does "
        "not sweep: quote it to set the grid of seed ('hydra.sweeper.params.seed=\"0,-1\"'), or "
        "sweep seed directly: -m seed=0,-1",
    ),
    (  # a misspelt key: named, with the closest, and how to write the sweep
        ["hydra.sweeper.params.sed=0,1"],
        "hydra.sweeper.params.sed=0,1: sed is not a key of the config (closest: seed); to sweep "
        "a key, give its values directly: -m seed=0,1, or quote them: "
        "'hydra.sweeper.params.seed=\"0,1\"'",
    ),
    (
        ["hydra.sweeper.params.sed='0,1'"],
        "hydra.sweeper.params.sed='0,1': sed is not a key of the config (closest: seed)",
    ),
    (
        ["+hydra.sweeper.params.init.gan=1,2"],
        "+hydra.sweeper.params.init.gan=1,2: init.gan is not a key of the config (closest: "
        "init.gain); to sweep a key, give its values directly: -m init.gain=1,2",
    ),
    (  # a key with a dot: Hydra reads it as a section of hydra.sweeper.params
        ["+hydra.sweeper.params.init.gain=1,2"],
        "+hydra.sweeper.params.init.gain=1,2: Hydra reads this as a key gain inside "
        "hydra.sweeper.params.init, not as the key init.gain: sweep init.gain directly: "
        "-m init.gain=1,2",
    ),
    (  # a key of the config, not in the experiment's grid, without +
        ["hydra.sweeper.params.norm='none,batchnorm'"],
        "hydra.sweeper.params.norm='none,batchnorm': norm is not in the grid of "
        "experiment=tutorial (it has: init, seed): add it with +hydra.sweeper.params.norm=",
    ),
]


@pytest.mark.parametrize(("argv", "expected"), PARAMS, ids=[" ".join(a) for a, _ in PARAMS])
def test_a_grid_hydra_misreads_is_refused_with_how_to_write_it(argv, expected):
    message = _refused(["-m", "experiment=tutorial", *argv])
    assert message.startswith(expected), message


def test_a_grid_param_without_a_grid_to_add_it_to_is_refused():
    """Without an experiment, hydra.sweeper.params is null: Hydra fails with an AssertionError."""
    message = _refused(["-m", "+hydra.sweeper.params.seed='0,1'"])
    assert message == (
        "+hydra.sweeper.params.seed='0,1': there is no grid in hydra.sweeper.params to add seed "
        "to (an experiment=... sets one): sweep seed directly: -m seed=0,1"
    )


def test_a_grid_written_as_hydra_reads_it_passes():
    quoted = ["-m", "experiment=he2015", 'hydra.sweeper.params.seed="0,1"', "debug=smoke"]
    check(quoted, CONF, "train", runs=False)
    added = ["-m", "experiment=he2015", "+hydra.sweeper.params.norm='none,batchnorm'"]
    check([*added, "debug=smoke"], CONF, "train", runs=False)


def test_a_quoted_grid_is_checked_value_by_value():
    message = _refused(["-m", "experiment=tutorial", "hydra.sweeper.params.seed='0,-1'"])
    assert message.startswith("seed=-1 must be an integer in [0, 4294967295]"), message


# -- an experiment's grid without -m ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["experiment=tutorial"],
            "experiment=tutorial is a study of 27 runs (init x seed): add -m (--multirun) to "
            "run it",
        ),
        (
            ["experiment=tutorial", "seed=1"],
            "experiment=tutorial is a study of 9 runs (init): add -m (--multirun) to run it",
        ),
        (
            ["experiment=depth", "init=he", "seed=0", "norm=none"],
            "experiment=depth is a study of 5 runs (model.depth): add -m (--multirun) to run it",
        ),
    ],
)
def test_an_experiment_without_m_is_refused_naming_its_grid(argv, expected):
    assert _refused(argv) == expected


def test_an_experiment_whose_grid_is_one_run_runs_without_m():
    check(["experiment=tutorial", "init=he", "seed=0", "debug=smoke"], CONF, "train", runs=False)


# -- the command line: exit status 2, one line, nothing written -----------------------------------
CLI = [
    (["hparams_search=gain", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 must be"),
    (["hparams_search=gain", "hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs=0 must be"),
    (
        ["hparams_search=gain", "hydra.sweeper.direction=sideways"],
        "hydra.sweeper.direction='sideways' must be minimize or maximize",
    ),
    (
        ["-m", "experiment=tutorial", "hydra.sweeper.params.seed=0,-1"],
        "hydra.sweeper.params.seed=0,-1 gives a list to a setting of Hydra's",
    ),
    (
        ["-m", "experiment=tutorial", "hydra.sweeper.params.sed=0,1"],
        "sed is not a key of the config (closest: seed)",
    ),
    (["experiment=tutorial"], "experiment=tutorial is a study of 27 runs (init x seed): add -m"),
]


@pytest.mark.parametrize(("argv", "expected"), CLI, ids=[" ".join(a) for a, _ in CLI])
def test_cli_refuses_bad_sweeper_input_exit_2_one_line_nothing_written(tmp_path, argv, expected):
    if "hparams_search=gain" in argv:
        _plugin()
    out = tmp_path / "out"
    proc = run_train(
        [*argv, "debug=smoke", f"hydra.run.dir={out}", f"hydra.sweep.dir={out}"], cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("initlab: error: ") and expected in proc.stderr
    assert proc.stdout == ""
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
