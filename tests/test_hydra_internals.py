"""What initlab relies on in Hydra beyond its documented API (``initlab._hydra``): each internal
exists, and each text and behaviour is still what Hydra itself prints or does.

A Hydra release that moves one fails here with its name (and at the start of every command line
through ``check_internals``), not as a preflight that disagrees with Hydra in silence;
``pyproject.toml`` pins the versions these tests passed on.
"""

from __future__ import annotations

import re
from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, RunMode

from initlab import _hydra, cli
from initlab._hydra import INTERNALS, HydraInternalsError, check_internals

from .conftest import CONF

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hydra_here():
    """Hydra initialized on initlab's conf/ (cleared after)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield GlobalHydra.instance()
    GlobalHydra.instance().clear()


# -- each internal exists, and a missing one is named ---------------------------------------------
@pytest.mark.parametrize("name", INTERNALS)
def test_each_internal_exists(name):
    check_internals([name])


def _owner_and_attr(name: str):
    """The object that holds the last part of ``name``, and that part: the longest importable
    module, then attributes (Hydra's plugin scan puts its plugin modules in ``sys.modules``
    without binding them to their package, so ``package.module`` may not be an attribute)."""
    import importlib

    *path, attr = name.split(".")
    for i in range(len(path), 0, -1):
        try:
            owner = importlib.import_module(".".join(path[:i]))
        except ImportError:
            continue
        for part in path[i:]:
            owner = getattr(owner, part)
        return owner, attr
    raise AssertionError(f"nothing of {name} imports")


@pytest.mark.parametrize("name", INTERNALS)
def test_a_missing_internal_is_named_with_the_hydra_version(name, monkeypatch):
    """Fails with e.g. "hydra-core 1.4.0 moved or removed ... (hydra._internal.config_loader_impl
    .get_overrides_dirname) ...: update src/initlab/_hydra.py"."""
    owner, attr = _owner_and_attr(name)
    monkeypatch.delattr(owner, attr)
    with pytest.raises(HydraInternalsError) as raised:
        check_internals()
    message = str(raised.value)
    assert f"hydra-core {hydra.__version__} moved or removed " in message
    assert f".{attr} ({name})" in message, message
    assert f"checked on hydra-core {_hydra.CHECKED_ON}" in message
    assert "update src/initlab/_hydra.py" in message and "\n" not in message


def test_a_moved_module_is_named(monkeypatch):
    import sys

    import hydra._internal

    monkeypatch.setitem(sys.modules, "hydra._internal.config_loader_impl", None)
    monkeypatch.delattr(hydra._internal, "config_loader_impl")
    with pytest.raises(HydraInternalsError, match=r"moved or removed hydra\._internal\.config_lo"):
        check_internals()


def test_a_missing_internal_stops_the_command_line_before_anything(monkeypatch, capsys, tmp_path):
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    monkeypatch.delattr(BasicSweeper, "split_arguments")
    with pytest.raises(SystemExit) as stopped:
        cli.preflight(["-m", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"], CONF, "train")
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("initlab: error: hydra-core ") and "BasicSweeper.split_arguments" in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


# -- the texts of Hydra's errors initlab reads ----------------------------------------------------
def _composition_error(overrides: list[str]) -> BaseException:
    with pytest.raises((ConfigCompositionException, MissingConfigException)) as raised:
        compose("train", overrides=overrides, return_hydra_config=True)
    return raised.value


def test_could_not_override_names_the_key(hydra_here):
    assert _hydra.overridden_key(_composition_error(["model.dept=3"])) == "model.dept"
    exc = _composition_error(["experiment=tutorial", "hydra.sweeper.params.sed=0"])
    assert _hydra.overridden_key(exc) == "hydra.sweeper.params.sed"


@pytest.mark.parametrize(
    ("overrides", "key", "value"),
    [
        (["model.depth=two"], "model.depth", "two"),
        (["seed=1.5"], "seed", "1.5"),
        (["hydra.sweeper.max_batch_size=x"], "hydra.sweeper.max_batch_size", "x"),
    ],
)
def test_error_merging_names_the_override_and_its_cause_the_key(hydra_here, overrides, key, value):
    exc = _composition_error(overrides)
    assert _hydra.merged_override(exc) == (key, value)
    cause = _hydra.composition_cause(exc)
    assert type(cause).__name__ == "ValidationError" and str(cause.full_key) == key


def test_a_missing_option_names_its_group_and_options(hydra_here):
    exc = _composition_error(["init=hee"])
    assert isinstance(exc, MissingConfigException)
    group, option, options = _hydra.missing_option(exc)
    assert (group, option) == ("init", "hee")
    assert {"he", "xavier", "zero"} <= set(options)


def test_the_regexes_read_what_the_preflight_prints():
    """The lines the preflight builds from those texts (as tests/test_bad_input.py checks)."""
    with pytest.raises(cli.BadInput, match=r"^model\.dept is not a key of 'model' \(it has: "):
        cli.check(["model.dept=3", "data=synthetic"], CONF, "train")
    with pytest.raises(cli.BadInput, match=r"^model\.depth='two' must be a positive integer"):
        cli.check(["model.depth=two", "data=synthetic"], CONF, "train")


# -- behaviour the preflight re-states: compared with Hydra's own ---------------------------------
@pytest.mark.parametrize(
    "line",
    [
        "hydra.sweeper.params.seed=0,1",
        "hydra.sweeper.n_trials=3,4",
        "hydra/launcher=basic,local",
        "hydra.sweeper.params.seed='0,1'",
        "seed=0,1",
        "init=zero,he",
        "hydra.job.chdir=false",
    ],
)
def test_a_sweep_of_hydras_settings_is_refused_as_hydra_refuses_it(hydra_here, line):
    """``sweeps_hydra_setting`` is the rule Hydra's config loader applies in a multirun."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    o = OverridesParser.create().parse_override(line)
    try:
        ConfigLoaderImpl.validate_sweep_overrides_legal([o], RunMode.MULTIRUN, from_shell=True)
        hydra_refuses = False
    except ConfigCompositionException as exc:
        assert "Sweeping over Hydra's configuration is not supported" in str(exc)
        hydra_refuses = True
    assert _hydra.sweeps_hydra_setting(o) == hydra_refuses


def test_the_default_sweeper_is_the_basic_one(hydra_here):
    cfg = compose("train", return_hydra_config=True)
    assert cfg.hydra.sweeper._target_ == _hydra.BASIC_SWEEPER
    assert _hydra.is_basic_sweeper(cfg.hydra.sweeper._target_) and _hydra.is_basic_sweeper(None)
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    search = compose("train", ["hparams_search=gain"], return_hydra_config=True)
    assert not _hydra.is_basic_sweeper(search.hydra.sweeper._target_)


def test_the_basic_launcher_logs_on_the_logger_a_sweep_quiets():
    from hydra._internal.core_plugins import basic_launcher

    from initlab.hydra_callbacks import _QUIET_LOGGERS

    assert basic_launcher.log.name == _hydra.BASIC_LAUNCHER_LOGGER
    assert _hydra.BASIC_LAUNCHER_LOGGER in _QUIET_LOGGERS
    assert "log.info" in Path(basic_launcher.__file__).read_text()  # its "#3 : ..." lines


def test_job_value_is_a_failed_jobs_exception_without_raising(capsys):
    error = RuntimeError("boom")
    ret = JobReturn(overrides=["seed=0"], status=JobStatus.FAILED)
    ret.return_value = error  # the public setter
    assert _hydra.job_value(ret) is error
    with pytest.raises(RuntimeError):  # why: the public getter raises it (and says so on stderr)
        _ = ret.return_value
    assert "Error executing job" in capsys.readouterr().err
    done = JobReturn(overrides=[], status=JobStatus.COMPLETED)
    assert done.return_value is None and _hydra.job_value(done) is None


def _sampled(n: int) -> list[int]:
    """The jobs whose directory name is compared (composing each costs): the first two, the
    middle one and the last."""
    return sorted({0, min(1, n - 1), n // 2, n - 1})


class _Recorder(Launcher):
    """A launcher that runs nothing: it records each job's overrides and, for the sampled ones,
    the ``hydra.job.override_dirname`` Hydra's config loader gives the job (what run_job names
    its directory after)."""

    def __init__(self, loader, config) -> None:
        self.loader, self.config, self.jobs = loader, config, []

    def setup(self, *, hydra_context, task_function, config) -> None:  # pragma: no cover
        pass

    def launch(self, job_overrides, initial_job_idx):
        self.jobs += [list(job) for job in job_overrides]
        return [JobReturn(overrides=list(job), status=JobStatus.COMPLETED) for job in job_overrides]

    def dirnames(self) -> dict[int, str]:
        return {
            i: self.loader.load_sweep_config(self.config, self.jobs[i]).hydra.job.override_dirname
            for i in _sampled(len(self.jobs))
        }


def _hydras_jobs(argv: list[str], sweep_dir: Path) -> tuple[list[list[str]], dict[int, str]]:
    """The jobs Hydra's own sweeper makes of ``argv`` (``-m``), in its order, and the sampled
    ones' override_dirname: the sweeper as Hydra instantiates it from the config, its launcher
    replaced by a recorder (and the composition of every job it does first, to catch errors
    early, left out: it decides nothing)."""
    loader = GlobalHydra.instance().config_loader()
    config = loader.load_configuration(
        "train", [*argv, f"hydra.sweep.dir={sweep_dir}"], run_mode=RunMode.MULTIRUN
    )
    context = HydraContext(config_loader=loader, callbacks=None)  # type: ignore[arg-type]
    sweeper = Plugins.instance().instantiate_sweeper(
        config=config, hydra_context=context, task_function=lambda cfg: None
    )
    recorder = _Recorder(loader, config)
    sweeper.launcher = recorder
    sweeper.validate_batch_is_legal = lambda batch: None
    sweeper.sweep(arguments=list(config.hydra.overrides.task))
    return recorder.jobs, recorder.dirnames()


def _initlabs_jobs(argv: list[str]) -> tuple[list[list[str]], dict[int, str]]:
    """The jobs the preflight checks for ``argv`` (``-m``), and the override_dirname it
    computes for the sampled ones (without composing each job whole)."""
    composer = cli._Composer(CONF, "train")
    params = composer(cli._settings_job(argv))["hydra"]["sweeper.params"]
    jobs = cli.sweep_jobs(argv, True, params)
    names = {i: composer(jobs[i])["hydra"]["override_dirname"] for i in _sampled(len(jobs))}
    return jobs, names


GRIDS = [
    ["init=zero,xavier", "norm=none,batchnorm", "seed=0"],
    ["experiment=tutorial"],  # the experiment's hydra.sweeper.params: 27 jobs
    ["experiment=tutorial", "seed=5", "model.depth=2,3"],  # a grid key replaced, one added
    ["experiment=phase_diagram", "model.depth=10"],  # dotted keys in the params
    ["experiment=he2015", "+trainer.max_steps=3", "optimizer.lr=0.1,0.01", "debug=smoke"],
    ["model.depth=range(2,8,2)", "data.root=/tmp/x", "progress_bar=false", "force=true"],
]


@pytest.mark.parametrize("argv", GRIDS, ids=[" ".join(a) for a in GRIDS])
def test_the_jobs_and_their_dirnames_are_hydras(hydra_here, argv, tmp_path):
    """The preflight's grid (through ``_hydra.basic_sweeper_jobs``) and each job's
    override_dirname (``_hydra.override_dirname``) are those of Hydra's own sweep."""
    jobs, dirnames = _hydras_jobs(argv, tmp_path / "sweep")
    assert len(jobs) > 1
    assert _initlabs_jobs(argv) == (jobs, dirnames)


# -- the fence: no other module touches them ------------------------------------------------------
_PRIVATE = re.compile(
    r"\bhydra\._internal\b|\bfrom hydra import _internal\b|\b_return_value\b"
    r"|Could not override|Error merging override|missing_cfg_file|Sweeping over Hydra"
    r"|\bget_overrides_dirname\b|\bsplit_arguments\b|\b_parse_config\b"
)


def test_only_initlab_hydra_touches_hydras_internals():
    sources = [*sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "scripts").rglob("*.py"))]
    sources.append(ROOT / "train.py")
    found = []
    for path in sources:
        if path == Path(_hydra.__file__).resolve():
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _PRIVATE.search(line.split("#", 1)[0]):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, (
        "Hydra internals used outside src/initlab/_hydra.py (add a function there and call it):\n"
        + "\n".join(found)
    )
