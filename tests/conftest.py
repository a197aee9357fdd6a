"""Shared fixtures: composed configs (Hydra compose API), synthetic data, the real MNIST root."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TRAIN = ROOT / "train.py"

# 149 steps per epoch on synthetic data, 3 epochs: a run long enough to be stopped in the middle.
LONG_RUN = [
    "data=synthetic",
    "data.synthetic_train=10000",
    "data.val_size=500",
    "trainer.max_epochs=3",
    "trainer.val_check_interval=40",
    "progress_bar=false",
    "diagnostics=off",
]

# Tiny, fast settings for runs on synthetic data.
FAST = [
    "data=synthetic",
    "trainer.max_epochs=1",
    "trainer.val_check_interval=5",
    "trainer.log_every_n_steps=5",
    "progress_bar=false",
]


def compose_train(overrides: list[str] | None = None, hydra: bool = False) -> DictConfig:
    """Compose conf/train.yaml as train.py would, without running anything (``hydra``: keep
    Hydra's own section, e.g. an experiment's sweeper params)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides or [], return_hydra_config=hydra)


@pytest.fixture
def cfg_fast() -> DictConfig:
    return compose_train(FAST)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The real MNIST folder (holding MNIST/raw), from INITLAB_MNIST_ROOT; skip without it."""
    root = os.environ.get("INITLAB_MNIST_ROOT")
    if not root or not (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip("real MNIST not available (set INITLAB_MNIST_ROOT to a folder with MNIST/raw)")
    return Path(root)


def sgd_steps(net, steps: int = 5, seed: int = 0) -> None:
    """A few real SGD steps on random 784-pixel inputs (symmetry must survive them, or break)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.5)
    for _ in range(steps):
        x = torch.randn(32, 784, generator=gen)
        y = torch.randint(0, 10, (32,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()


# An environment without a network: every download is refused at once (a closed local port as
# the proxy), so a run that must download MNIST fails, as it does when the network is down.
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def run_train(
    args: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run train.py as a user would, from ``cwd`` (``env``: variables added to the environment)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, str(TRAIN), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def start_train(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start train.py as a user would, from ``cwd``: its stdout and stderr in one pipe."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(TRAIN), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until ``path`` exists, failing if ``proc`` ends first (it was not interrupted)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "it ended first:\n" + proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def bare_trainer(**kwargs):
    """A Lightning Trainer on the CPU with no logger, checkpoints, bar or summary (the test's
    own ``kwargs`` win)."""
    import lightning as L

    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**{**defaults, **kwargs})
