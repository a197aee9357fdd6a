"""One declaration per setting: a value is checked against what it feeds before anything runs, a
setting that another would silently override is refused, and a range check never waits for torch.

Each test is a class of bad input found by trying initlab as a new user would; its cases are a
few of the values that class holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from initlab.cli import BadInput, check
from initlab.config import ACTIVATIONS, NORMS, STUDIES

from .conftest import CONF, FAST, ROOT, run_train


def _refused(argv: list[str], *parts: str) -> str:
    with pytest.raises(BadInput) as err:
        check(argv, CONF, "train")
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message


# -- values reaching torch or Lightning unchecked --------------------------------------------
@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        # a non-empty string is true to torch: Nesterov on, gradient ascent
        (["+optimizer.nesterov=no"], ["optimizer.nesterov='no'", "true or false"]),
        (["+optimizer.maximize=off"], ["optimizer.maximize='off'"]),
        (["+optimizer.foreach=yes"], ["optimizer.foreach='yes'", "true or false or null"]),
        (["+optimizer.differentiable=1"], ["optimizer.differentiable=1", "true or false"]),
        (["optimizer.momentum=true"], ["optimizer.momentum=True", "number"]),
        (
            ["optimizer._target_=torch.optim.Adam", "~optimizer.momentum", "+optimizer.betas=0.9"],
            ["optimizer.betas=0.9", "two numbers in [0, 1)"],
        ),  # fmt: skip
        # the Trainer's arguments, from its signature
        (["+trainer.detect_anomaly=no"], ["trainer.detect_anomaly='no'", "true or false"]),
        (["+trainer.benchmark=1"], ["trainer.benchmark=1", "true or false or null"]),
        (["+trainer.inference_mode=off"], ["trainer.inference_mode='off'", "true or false"]),
        (["+trainer.sync_batchnorm=maybe"], ["trainer.sync_batchnorm='maybe'"]),
        (["+trainer.limit_val_batches=many"], ["trainer.limit_val_batches='many'"]),
        (["+trainer.model_registry=3"], ["trainer.model_registry=3", "a string or null"]),
    ],
)
def test_a_value_of_the_wrong_type_never_reaches_torch_or_lightning(argv, parts):
    _refused(["data=synthetic", *argv], *parts)


def test_gradient_ascent_is_refused_even_when_spelled_as_a_bool():
    _refused(["data=synthetic", "+optimizer.maximize=true"], "optimizer.maximize=True", "false")


def test_arguments_of_the_right_type_pass():
    check(["data=synthetic", "+optimizer.nesterov=true", "+trainer.detect_anomaly=false"], CONF,
          "train")  # fmt: skip


# -- settings silently ignored or overridden -------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        (
            ["model.hidden_sizes=[64]", "model.depth=5"],
            ["model.hidden_sizes=[64]", "model.depth=5"],
        ),
        (["model.hidden_sizes=[64,64]", "model.depth=3"], ["(2 layers)", "model.depth=3"]),
        (["model.hidden_sizes=[64]", "model.width=32"], ["model.hidden_sizes", "model.width"]),
        # the same in a sweep: two "seeds" of one network, or one refused job in the grid
        (["-m", "model.hidden_sizes=[64]", "model.depth=2,4"], ["model.depth=2"]),
        # a per-epoch interval longer than the epoch never validates inside it
        (
            ["trainer.check_val_every_n_epoch=1", "trainer.val_check_interval=500"],
            ["trainer.val_check_interval=500", "13 training steps"],
        ),  # fmt: skip
        # a budget that is not one: early stops, a time limit, a partial step-0 validation
        (["+trainer.min_epochs=2"], ["trainer.min_epochs=2", "budget"]),
        (["+trainer.min_steps=10"], ["trainer.min_steps=10", "budget"]),
        (["+trainer.max_time=00:00:01:00"], ["trainer.max_time", "max_steps"]),
        (["trainer.num_sanity_val_steps=2"], ["trainer.num_sanity_val_steps=2", "-1"]),
        # a study name the report does not know would give a report without its claims
        (["study=tutorail"], ["study='tutorail'", "tutorial"]),
        (["-m", "seed=0,1", "study=x/../../escape"], ["study='x/../../escape'"]),
    ],
)
def test_a_setting_another_would_silently_override_is_refused(argv, parts):
    _refused(["data=synthetic", *argv], *parts)


def test_hidden_sizes_with_the_depth_they_have_pass():
    check(["data=synthetic", "model.hidden_sizes=[64,32]", "model.depth=2"], CONF, "train")


def test_the_choices_are_declared_once_and_cover_the_code():
    from initlab import data, mlp
    from initlab.report.claims import PAPER_CLAIMS, TUTORIAL_STUDY
    from initlab.report.phase import PHASE_STUDY

    assert tuple(mlp.ACTIVATION_MODULES) == ACTIVATIONS
    assert data.DATASET_NAMES == ("mnist", "synthetic")
    for norm in NORMS:  # every norm builds
        mlp.build_mlp(784, [8], 10, norm=norm)
    experiments = {p.stem: p.read_text() for p in (CONF / "experiment").glob("*.yaml")}
    assert set(experiments) == set(STUDIES)
    for name, text in experiments.items():
        assert f"study: {name}" in text
    assert {TUTORIAL_STUDY, PHASE_STUDY, *PAPER_CLAIMS} <= set(STUDIES)


def test_a_run_validates_at_the_end_of_its_budget_whatever_the_interval(tmp_path):
    """val_check_interval=null with check_val_every_n_epoch=2 and one epoch never validated, yet
    recorded the step-0 accuracy as final.val_acc and every threshold as never reached."""
    argv = [
        *FAST,
        "trainer.val_check_interval=null",
        "trainer.check_val_every_n_epoch=2",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    proc = run_train(argv, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    steps = [h["step"] for h in record["history"]]
    assert steps == [0, record["budget"]["steps"]]
    assert record["final"]["val_acc"] == record["history"][-1]["val_acc"] > 0.5
    assert record["steps_to_val_acc"]["0.90"] == record["budget"]["steps"]


# -- refusals that must not wait for torch and Lightning ---------------------------------------
_TORCH_FREE = [
    ["model.depth=0"],
    ["norm=none", "norm.name=groupnorm"],
    ["model.activation=swish"],
    ["data.val_size=60000"],
    ["model.hidden_sizes=[64]", "model.depth=5"],
    ["trainer.num_sanity_val_steps=3"],
    ["study=tutorail"],
    ["model.residual=true"],  # the tutorial's widths 512, 256: not one width
    ["init=fixup"],  # needs model.residual=true
]


def test_a_range_is_refused_without_loading_torch():
    """One fresh interpreter checks each command line in turn: each is refused, and torch and
    Lightning are still not loaded after all of them (model.depth=0 took 17 s to refuse)."""
    code = (
        "import sys; from initlab.cli import BadInput, check\n"
        f"for argv in {_TORCH_FREE!r}:\n"
        "    try:\n"
        f"        check(argv, {str(CONF)!r}, 'train')\n"
        "    except BadInput as e:\n"
        "        print('refused:', e)\n"
        "print('loaded:', sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.count("refused:") == len(_TORCH_FREE), out.stdout + out.stderr
    assert "loaded: []" in out.stdout, out.stdout


# -- bad input that got past the preflight ---------------------------------------------------
def test_batch_norm_with_a_training_set_of_one_image_is_refused():
    _refused(
        ["data=synthetic", "norm=batchnorm", "data.synthetic_train=21", "data.val_size=20"],
        "data.val_size=20",
        "norm=batchnorm",
    )


def test_a_data_root_name_longer_than_a_filesystem_allows_is_refused():
    _refused([f"data.root=/tmp/{'d' * 300}", "data.fallback=false"], "data.root=", "255")


@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        (["hydra.run.dir="], ["is the directory you launch from"]),
        (["hydra.run.dir=."], ["is the directory you launch from"]),
        (["hydra.run.dir=.."], ["or above it"]),
        (["-m", "seed=0,1", "hydra.sweep.dir=."], ["is the directory you launch from"]),
    ],
)
def test_the_run_dir_is_never_the_launch_dir(tmp_path, monkeypatch, argv, parts):
    monkeypatch.chdir(tmp_path)
    _refused(["data=synthetic", *argv], *parts)
    assert list(tmp_path.iterdir()) == []


def test_a_dangling_symlink_as_the_run_dir_is_refused(tmp_path):
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "nowhere")
    _refused(["data=synthetic", f"hydra.run.dir={link}"], "is a link to", "does not exist")


def test_a_disk_without_room_for_the_checkpoints_is_refused_before_the_run(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    _refused(["data=synthetic", f"hydra.run.dir={tmp_path / 'run'}"], "0.0 MiB free", "needs about")
    assert not (tmp_path / "run").exists()


def test_propagate_refuses_more_inputs_than_images_before_writing(tmp_path):
    script = Path(ROOT) / "scripts" / "propagate.py"
    argv = ["data=synthetic", "propagate.n_inputs=5000", f"hydra.run.dir={tmp_path / 'p'}"]
    proc = subprocess.run(
        [sys.executable, str(script), *argv], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "propagate.n_inputs=5000" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []
