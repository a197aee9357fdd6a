"""Config composition for every group option, and validation of bad values."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf

from initlab.cli import _Composer, check
from initlab.config import RESIDUAL_INITS, ConfigError, validate
from initlab.mlp import resolve_hidden_sizes
from initlab.schedule import schedule_of

from .conftest import CONF, compose_train

GROUPS = ["init", "norm", "model", "data", "optimizer", "trainer", "logger", "diagnostics"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_every_group_has_options():
    for group in GROUPS:
        assert any(g == group for g, _ in OPTIONS), f"conf/{group}/ has no options"


# options that need other settings: the residual inits need a residual net (of one width)
NEEDS = {("init", n): ["model.residual=true", "model.width=64"] for n in RESIDUAL_INITS}


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_and_validates(group, option):
    cfg = compose_train([f"{group}={option}", *NEEDS.get((group, option), [])])
    validate(cfg)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def _grid(name: str) -> list[list[str]]:
    """Every job of an experiment's sweep, as the override lists Hydra's basic sweeper makes."""
    params = compose_train([f"experiment={name}"], hydra=True).hydra.sweeper.params
    axes = [[f"{k}={v}" for v in str(values).split(",")] for k, values in params.items()]
    return [list(job) for job in itertools.product(*axes)]


def test_there_are_experiments():
    assert {"tutorial", "init_x_norm", "depth"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_job_of_every_experiment_passes_preflight(name):
    """Every job of the grid composed and validated, as the command line checks a sweep."""
    assert len(_grid(name)) >= 9
    check(["-m", f"experiment={name}"], CONF, "train")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_preflight_composes_each_job_as_hydra_does(name):
    """Preflight composes once per group choice and applies the rest itself: the result must be
    Hydra's own composition (every 7th job of the grid, compared whole)."""
    jobs = _grid(name)[::7]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        composer = _Composer(CONF, "train")
        for job in jobs:
            overrides = [f"experiment={name}", *job]
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
            dirname = cfg.hydra.job.override_dirname
            task = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                    for k, v in cfg.items() if k != "hydra"}  # fmt: skip
            ours = composer(overrides)
            assert {k: v for k, v in ours.items() if k != "hydra"} == task, job
            assert ours["hydra"]["override_dirname"] == dirname, job
            validate(task)
            assert task["study"] == name


def test_experiment_grids():
    assert len(_grid("tutorial")) == 9 * 3
    assert len(_grid("init_x_norm")) == 9 * 4 * 3
    assert len(_grid("depth")) == 5 * 3 * 5 * 3
    cfg = compose_train(["experiment=depth", "model.depth=16"])
    assert (
        resolve_hidden_sizes(cfg.model.depth, cfg.model.width, cfg.model.hidden_sizes) == [256] * 16
    )


def test_defaults_reproduce_the_tutorial():
    cfg = compose_train()
    assert cfg.model.input_size == 784 and cfg.model.num_classes == 10
    assert resolve_hidden_sizes(cfg.model.depth, cfg.model.width, cfg.model.hidden_sizes) == [
        512,
        256,
    ]
    assert cfg.model.activation == "relu"
    assert cfg.init.bias == 0.0
    assert cfg.optimizer._target_ == "torch.optim.SGD"
    assert (cfg.optimizer.lr, cfg.optimizer.momentum) == (0.01, 0.5)
    assert cfg.data.batch_size == 64 and cfg.trainer.max_epochs == 5
    assert (cfg.data.mean, cfg.data.std) == (0.1307, 0.3081)
    assert cfg.seed == 0
    assert cfg.trainer.val_check_interval == 100


def test_unknown_group_option_lists_the_valid_ones():
    with pytest.raises(MissingConfigException) as err:
        compose_train(["init=hee"])
    assert "hee" in str(err.value) and "xavier" in str(err.value)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("model.depth=0", "model.depth=0"),
        ("model.width=-3", "model.width=-3"),
        ("model.hidden_sizes=[512,0]", "model.hidden_sizes"),
        ("model.activation=swish", "model.activation='swish'"),
        ("optimizer.lr=0", "optimizer.lr=0"),
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1"),
        ("data.batch_size=0", "data.batch_size=0"),
        ("data.val_size=0", "data.val_size=0"),
        ("thresholds=[0.9,1.5]", "1.5"),
        ("seed=-1", "seed=-1"),
        ("+model.dept=3", "model.dept is not a key"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0"),
        ("steps_per_execution=0", "steps_per_execution=0"),
        ("steps_per_execution=many", "steps_per_execution='many'"),
    ],
)
def test_validate_names_field_and_value(override, field):
    cfg = compose_train(override.split())
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    assert field in message and "\n" not in message


@pytest.mark.parametrize(
    ("override", "key"), [("model.depth=two", "model.depth"), ("seed=abc", "seed")]
)
def test_hydra_checks_the_schema_types_as_it_composes(override, key):
    """The schema is registered in Hydra's ConfigStore: Hydra itself refuses a value of the wrong
    type, naming the field (the command line turns this into one line, see test_bad_input)."""
    with pytest.raises(HydraException) as err:
        compose_train([override])
    assert err.value.__cause__ is not None and err.value.__cause__.full_key == key


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], 50),  # batch 64: the cap of 50 steps
        (["data.batch_size=256"], 16),  # at most 4096 samples per block
        (["data.batch_size=8192"], 1),
        (["steps_per_execution=4"], 4),
        (["steps_per_execution=7", "trainer.val_check_interval=0.25"], 7),  # any size: the
    ],  # schedule ends blocks at its validations, so no block size is refused with them
)
def test_steps_per_execution_is_a_block_size_the_schedule_cuts(overrides, expected):
    cfg = OmegaConf.to_container(compose_train(overrides), resolve=True)
    validate(cfg)
    assert schedule_of(cfg, 55000).block == expected


def test_hidden_sizes_and_width_conflict():
    with pytest.raises(ConfigError, match="both set"):
        validate(compose_train(["model.hidden_sizes=[10,10]", "model.width=5"]))


@pytest.mark.parametrize(
    ("depth", "width", "sizes", "expected"),
    [
        (2, None, None, [512, 256]),
        (1, None, None, [512]),
        (4, None, None, [512, 256, 256, 256]),
        (3, 128, None, [128, 128, 128]),
        (2, None, [100, 50, 25], [100, 50, 25]),
    ],
)
def test_resolve_hidden_sizes(depth, width, sizes, expected):
    assert resolve_hidden_sizes(depth, width, sizes) == expected
