"""Bad input: one clear line naming the field and the value, exit status 2, nothing written."""

from __future__ import annotations

import shutil

import pytest

from initlab.cli import BadInput, check
from initlab.data import DataError, MNISTDataModule
from initlab.mnist_files import MNIST_CHECKS, verify_mnist

from .conftest import CONF, run_train

LONG_DIR = "/tmp/" + "a" * 300  # one path component over a filesystem's 255 bytes

CASES = [
    # (command line, what the message must contain)
    # -- config groups and keys
    (["init=hee"], ["init=hee", "he, he_uniform", "xavier"]),
    (["norm=groupnorm"], ["norm=groupnorm", "batchnorm", "layernorm"]),
    (["model.dept=3"], ["model.dept is not a key of 'model'", "depth"]),
    (["+model.dept=3"], ["model.dept is not a key of 'model'", "depth"]),
    (["+foo=1"], ["foo is not a key of initlab's config", "seed"]),
    (["foo.bar=1"], ["foo.bar is not a key of the config (it has: seed, ", "model"]),
    (["model.foo.bar=1"], ["model.foo.bar is not a key of 'model' (it has: ", "depth"]),
    (["trainer.precision=16"], ["trainer.precision is not a key", "+trainer.precision"]),
    (["+trainer.max_stepz=3"], ["trainer.max_stepz is not an argument of lightning.Trainer"]),
    (["init=xavier", "+init.std=0.1"], ["init.std is not a parameter of init=xavier", "gain"]),
    (["+optimizer.momentun=0.9"], ["optimizer.momentun is not an argument", "momentum"]),
    # -- types (Hydra checks them against the schema as it composes)
    (["model.depth=two"], ["model.depth='two'", "positive integer"]),
    (["seed=1.5"], ["seed=1.5", "integer"]),
    (["force=maybe"], ["force='maybe'", "true or false"]),
    (["init=xavier", "init.gain=big"], ["init.gain='big'", "number"]),
    # -- ranges
    (["model.depth=0"], ["model.depth=0", "positive integer"]),
    (["model.width=-5"], ["model.width=-5", "positive integer"]),
    (["model.hidden_sizes=[512,0]"], ["model.hidden_sizes=[512, 0]", "positive integers"]),
    (["model.num_classes=5"], ["model.num_classes=5", "10"]),
    (["model.input_size=100"], ["model.input_size=100", "784"]),
    (["seed=-1"], ["seed=-1", "[0, 4294967295]"]),
    (["seed=4294967296"], ["seed=4294967296", "[0, 4294967295]"]),
    (["optimizer.lr=0"], ["optimizer.lr=0", "> 0"]),
    (["optimizer.lr=-0.5"], ["optimizer.lr=-0.5", "> 0"]),
    (["optimizer.lr=nan"], ["optimizer.lr=nan", "> 0"]),
    (["optimizer.momentum=1.5"], ["optimizer.momentum=1.5", "[0, 1)"]),
    (["optimizer.momentum=-0.1"], ["optimizer.momentum=-0.1", "[0, 1)"]),
    (["+optimizer.weight_decay=-1"], ["optimizer.weight_decay=-1", ">= 0"]),
    (["optimizer._target_=torch.optim.Adamm"], ["torch.optim.Adamm", "torch optimizer class"]),
    (["init=small_normal", "init.std=0"], ["init.std=0", "> 0"]),
    (["init=small_normal", "init.std=inf"], ["init.std=inf", "> 0"]),
    (["init=xavier", "init.gain=-1"], ["init.gain=-1", "> 0"]),
    (["init=kaiming", "init.mode=fanin"], ["init.mode='fanin'", "fan_in, fan_out"]),
    (["init=he", "init.bias=nan"], ["init.bias=nan", "finite"]),
    (["init=mean_field", "init.weights=bogus"], ["init.weights='bogus'", "gaussian, orthogonal"]),
    (["init=mean_field", "init.sigma_w2=-1"], ["init.sigma_w2=-1", "or null: the edge of chaos"]),
    (["data.batch_size=0"], ["data.batch_size=0", "positive integer"]),
    (["data.std=0"], ["data.std=0", "> 0"]),
    (["data.split_seed=-3"], ["data.split_seed=-3", "[0, 4294967295]"]),
    (["data.val_size=1000"], ["data.val_size=1000", "smaller than the 1000"]),
    (["data.train_eval_size=-5"], ["data.train_eval_size=-5", ">= 0"]),
    (["data.train_eval_size=801"], ["data.train_eval_size=801", "use at most 800"]),
    (["data.synthetic_train=10"], ["data.synthetic_train=10", ">= 20"]),
    (["thresholds=[0.9,1.0]"], ["thresholds=[0.9, 1.0]", "(0, 1)"]),
    (["thresholds=[0.9,0.9]"], ["thresholds=[0.9, 0.9]", "distinct"]),
    (["trainer.max_epochs=0"], ["trainer.max_epochs=0", "positive integer"]),
    (["trainer.log_every_n_steps=0"], ["trainer.log_every_n_steps=0", "positive integer"]),
    (["trainer.val_check_interval=0"], ["trainer.val_check_interval=0", "(0, 1]"]),
    (["trainer.val_check_interval=1.5"], ["trainer.val_check_interval=1.5", "(0, 1]"]),
    (["trainer.devices=2"], ["trainer.devices=2", "one device per job"]),
    (["+trainer.limit_test_batches=0"], ["trainer.limit_test_batches=0", "positive integer"]),
    (["+trainer.precision=8"], ["trainer.precision=8", "32-true"]),
    (["+trainer.fast_dev_run=true"], ["trainer.fast_dev_run", "debug=smoke"]),
    (["+trainer.accumulate_grad_batches=4"], ["accumulate_grad_batches", "manual optimization"]),
    (["checkpoint.signals=[SIGKILL]"], ["checkpoint.signals=['SIGKILL']", "SIGUSR2"]),
    (["progress_bar=maybe"], ["progress_bar='maybe'", "auto, true or false"]),
    (["steps_per_execution=0"], ["steps_per_execution=0", "positive integer"]),
    (["logger.subdir=a/b"], ["logger.subdir='a/b'", "no '/'"]),
    (["diagnostics.every_n_steps=0"], ["diagnostics.every_n_steps=0", "positive integer"]),
    (["diagnostics.jacobian_inputs=-1"], ["diagnostics.jacobian_inputs=-1", ">= 0"]),
    # -- valid alone, not together
    (["norm=batchnorm", "data.batch_size=1"], ["data.batch_size=1", "norm=batchnorm"]),
    (["-m", "norm=none,batchnorm", "data.batch_size=64,1"], ["data.batch_size=1", "batchnorm"]),
    (
        ["+trainer.check_val_every_n_epoch=1", "trainer.val_check_interval=500"],
        ["trainer.val_check_interval=500", "13 training steps"],
    ),
    (["+optimizer.nesterov=true", "optimizer.momentum=0"], ["optimizer", "Nesterov"]),
    # -- residual nets: one width, a residual net for fixup / skipinit, a branch
    (["model.residual=true"], ["model.residual=true", "[512, 256]", "set model.width"]),
    (
        ["model.residual=true", "model.hidden_sizes=[64,32]"],
        ["model.hidden_sizes=[64, 32]", "set model.width"],
    ),  # fmt: skip
    (["init=fixup"], ["init=fixup needs model.residual=true"]),
    (["init=skipinit", "model.width=64"], ["init=skipinit needs model.residual=true"]),
    (
        ["model.residual=true", "model.width=64", "model.branch_layers=0"],
        ["model.branch_layers=0", "positive integer"],
    ),  # fmt: skip
    (["model.residual=yes"], ["model.residual='yes'", "true or false"]),
    # -- the machine
    (["trainer.accelerator=mps"], ["'accelerator': 'mps'", "Lightning refuses", "not available"]),
    (["model.width=100000", "model.depth=40"], ["GiB to train", "available"]),
    # -- sweeps and output dirs
    (["init=zero,he"], ["init=zero,he is a sweep", "-m"]),
    (["-m", "init=he,hee"], ["init=hee", "xavier"]),  # every swept value is checked
    (["-m", "experiment=depth", "model.depth=0"], ["model.depth=0"]),
    (["hydra.run.dir=/proc/initlab/run"], ["/proc/initlab/run", "cannot be created"]),
    ([f"hydra.run.dir={LONG_DIR}"], ["300 bytes", "at most 255"]),
    (["-m", f"hydra.sweep.dir={LONG_DIR}", "seed=0,1"], ["300 bytes", "at most 255"]),
]


@pytest.mark.parametrize(("argv", "expected"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_check_gives_one_line_naming_field_and_value(argv, expected, tmp_path):
    with pytest.raises(BadInput) as err:
        check([*argv, "data=synthetic"], CONF, "train")
    message = str(err.value)
    assert "\n" not in message
    assert "(it has: )" not in message  # a missing parent: the deepest one that exists
    for part in expected:
        assert part in message, message


def test_good_command_lines_pass(tmp_path):
    check(["init=xavier", "norm=batchnorm", "data=synthetic"], CONF, "train")
    check(["-m", "experiment=tutorial", "debug=smoke"], CONF, "train")
    check(["model.residual=true", "model.width=64", "init=fixup", "data=synthetic"], CONF, "train")
    check(["--cfg", "job", "init=hee"], CONF, "train")  # left to Hydra


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["model.depth=0"], "model.depth=0 must be a positive integer"),
        (["init=hee"], "init=hee is not an option of config group 'init': one of"),
        (["-m", "init=he,xavier", "optimizer.lr=-1"], "optimizer.lr=-1 must be a number > 0"),
    ],
)
def test_cli_exit_2_no_traceback_nothing_written(tmp_path, argv, expected):
    out = tmp_path / "out"
    proc = run_train(
        [*argv, "data=synthetic", f"hydra.run.dir={out}", f"hydra.sweep.dir={out}"], cwd=tmp_path
    )
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- data -----------------------------------------------------------------------------------
LABELS = "train-labels-idx1-ubyte"


def _raw(tmp_path, content: bytes, name: str = LABELS):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / name).write_bytes(content)
    return raw / name


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (bytes([0, 0, 8, 1]) + (60000).to_bytes(4, "big") + bytes(100), "has 108 bytes, not 60008"),
        ((1234).to_bytes(4, "big") + bytes(60004), "magic number 1234, not 2049"),
        (bytes([0, 0, 8, 1]) + (60000).to_bytes(4, "big") + bytes(60000), "md5 checksum"),
    ],
    ids=["truncated", "wrong-magic", "corrupted"],
)
def test_corrupted_idx_file_is_named_with_the_fix(tmp_path, content, problem):
    path = _raw(tmp_path, content)
    with pytest.raises(DataError) as err:
        verify_mnist(tmp_path)
    assert str(path) in str(err.value) and problem in str(err.value)
    assert "delete it" in str(err.value)
    # the data module refuses it too (no training on garbage), even with the fallback on
    with pytest.raises(DataError, match=problem):
        MNISTDataModule(root=tmp_path, download=False, fallback=True).setup()
    # and so does the command line, before anything is written
    with pytest.raises(BadInput, match=problem):
        check([f"data.root={tmp_path}"], CONF, "train")


def test_corrupted_gz_is_caught(tmp_path):
    path = _raw(tmp_path, b"not a gzip file", name=f"{LABELS}.gz")
    with pytest.raises(DataError, match="cannot be decompressed"):
        verify_mnist(tmp_path)
    assert path.exists()  # named, not deleted: the user decides


def test_missing_mnist_without_fallback_or_download(tmp_path):
    with pytest.raises(BadInput, match="put the four files"):
        argv = [f"data.root={tmp_path}", "data.download=false", "data.fallback=false"]
        check(argv, CONF, "train")
    with pytest.raises(BadInput, match="cannot be written to download it"):
        check(["data.root=/proc/initlab-data", "data.fallback=false"], CONF, "train")


@pytest.mark.mnist
def test_real_mnist_files_pass_verification(mnist_root, tmp_path):
    verify_mnist(mnist_root)
    # a copy with one byte changed does not
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(mnist_root / "MNIST" / "raw", raw)
    images = raw / "t10k-images-idx3-ubyte"
    data = bytearray(images.read_bytes())
    data[5000] ^= 0xFF
    images.write_bytes(bytes(data))
    assert len(data) == MNIST_CHECKS[images.name][0]
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte fails its md5"):
        verify_mnist(tmp_path)
