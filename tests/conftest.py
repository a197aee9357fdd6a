"""Shared fixtures: composed configs (Hydra compose API), synthetic data, the real MNIST root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TRAIN = ROOT / "train.py"

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


def run_train(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run train.py as a user would, from ``cwd``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(TRAIN), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


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
