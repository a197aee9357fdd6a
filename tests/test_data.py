"""The data module: splits, normalization, batching, the offline fallback."""

from __future__ import annotations

import pytest
import torch

from initlab.data import (
    EMBEDDED_NAME,
    MNIST_MEAN,
    MNIST_STD,
    BatchIndexSampler,
    DataError,
    MNISTDataModule,
    Split,
    TensorBatches,
    normalize,
    split_indices,
    write_synthetic_mnist,
)
from initlab.mnist_files import MNIST_FILES, read_idx_file, read_mnist_file
from initlab.schedule import Schedule


def test_split_indices_partition_and_are_fixed():
    keep, out = split_indices(1000, 100, seed=0)
    assert len(out) == 100 and len(keep) == 900
    assert sorted(torch.cat([keep, out]).tolist()) == list(range(1000))
    keep2, out2 = split_indices(1000, 100, seed=0)
    assert torch.equal(out, out2) and torch.equal(keep, keep2)


def test_normalize_arithmetic():
    images = torch.tensor([[[0, 255]]], dtype=torch.uint8)
    x = normalize(images)
    assert x.shape == (1, 2) and x.dtype == torch.float32
    expected = torch.tensor([[-MNIST_MEAN / MNIST_STD, (1 - MNIST_MEAN) / MNIST_STD]])
    torch.testing.assert_close(x, expected)


def test_synthetic_goes_through_the_idx_reader_as_torchvision_decodes_it(tmp_path):
    from torchvision.datasets import MNIST

    write_synthetic_mnist(tmp_path, n_train=50, n_test=20, seed=1)
    raw = tmp_path / "MNIST" / "raw"
    images = torch.from_numpy(read_idx_file(raw / "train-images-idx3-ubyte").array)
    labels = torch.from_numpy(read_idx_file(raw / "train-labels-idx1-ubyte").array).long()
    assert images.shape == (50, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (50,) and set(labels.tolist()) == set(range(10))
    reference = MNIST(str(tmp_path), train=True, download=False)  # an independent decoder
    assert torch.equal(images, reference.data) and torch.equal(labels, reference.targets)


def test_synthetic_datamodule_splits_without_overlap():
    dm = MNISTDataModule(name="synthetic", val_size=200, synthetic_train=1000, synthetic_test=200)
    dm.setup()
    assert dm.dataset_name == "synthetic"
    assert dm.sizes == {"train": 800, "val": 200, "test": 200}
    train_rows = {tuple(r.tolist()) for r in dm.train.x}
    assert not any(tuple(r.tolist()) in train_rows for r in dm.val.x)


def test_val_size_must_leave_training_data():
    dm = MNISTDataModule(name="synthetic", val_size=1000, synthetic_train=1000)
    with pytest.raises(DataError, match="data.val_size=1000 must be between 1 and 999"):
        dm.setup()


def test_batches_are_reshuffled_per_epoch_and_reproducible():
    sampler = BatchIndexSampler(n=100, batch_size=32, shuffle=True, seed=3)
    assert len(sampler) == 4
    epoch0 = torch.cat(list(sampler))
    assert sorted(epoch0.tolist()) == list(range(100))
    assert [len(b) for b in sampler] == [32, 32, 32, 4]
    sampler.set_epoch(1)
    epoch1 = torch.cat(list(sampler))
    assert not torch.equal(epoch0, epoch1)
    again = BatchIndexSampler(n=100, batch_size=32, shuffle=True, seed=3)
    again.set_epoch(1)
    assert torch.equal(torch.cat(list(again)), epoch1)
    other_seed = BatchIndexSampler(n=100, batch_size=32, shuffle=True, seed=4)
    other_seed.set_epoch(1)
    assert not torch.equal(torch.cat(list(other_seed)), epoch1)


def _sizes(blocks):
    return [len(b) for b in blocks]


def _blocks(block: int, total: int = 1000, every: int | None = None, per_epoch: int = 1000):
    """Schedule.block_end: blocks of ``block`` steps, a validation every ``every`` steps."""
    return Schedule(per_epoch, total, every, False, 1, True, block).block_end


@pytest.mark.parametrize(("start", "sizes"), [(0, [4, 4, 2]), (6, [2, 4, 4]), (7, [1, 4, 4, 1])])
def test_blocks_end_on_multiples_of_the_block_in_global_steps(start, sizes):
    plain = BatchIndexSampler(n=100, batch_size=10, shuffle=True, seed=3)
    blocks = BatchIndexSampler(
        n=100, batch_size=10, shuffle=True, seed=3, block_end=_blocks(4), step_fn=lambda: start
    )
    got = list(blocks)
    assert _sizes(got) == sizes
    ends = [start + sum(sizes[: i + 1]) for i in range(len(sizes))]
    assert all(e % 4 == 0 for e in ends[:-1])  # only the epoch's end cuts a block short
    # the same batches in the same order as one batch per step
    assert [b.tolist() for block in got for b in block] == [b.tolist() for b in plain]
    with pytest.raises(TypeError):
        len(blocks)  # the count depends on the start: Lightning must not end epochs by it


def test_blocks_also_end_at_each_validation_and_at_the_budget_end():
    ends = _blocks(4, total=7, every=3, per_epoch=10)
    blocks = BatchIndexSampler(
        n=100, batch_size=10, shuffle=True, seed=3, block_end=ends, step_fn=lambda: 0
    )
    # at the validations (3, 6), the multiples of 4 and the budget's end (7); past the budget,
    # single steps (never trained)
    assert _sizes(list(blocks))[:4] == [3, 1, 2, 1]
    assert [ends(s) for s in (0, 3, 4, 6, 10)] == [3, 4, 6, 7, 11]


def test_block_sampler_resumes_after_the_steps_done_and_keeps_the_alignment():
    step = {"now": 0}
    blocks = BatchIndexSampler(
        n=100,
        batch_size=10,
        shuffle=True,
        seed=3,
        block_end=_blocks(4),
        step_fn=lambda: step["now"],
    )
    full = [b for block in blocks for b in block]
    step["now"] = 3  # three batches trained, then the checkpoint
    assert blocks.steps_done() == 3
    blocks.resume(3)
    rest = list(blocks)
    assert _sizes(rest) == [1, 4, 2]  # to step 4, then whole blocks: as the first pass
    assert blocks.epoch_start_step == 0 and blocks.steps_done() == 3
    assert [b.tolist() for block in rest for b in block] == [b.tolist() for b in full[3:]]


def test_limit_keeps_the_first_batches_of_each_epoch():
    plain = BatchIndexSampler(n=100, batch_size=10, shuffle=True, seed=3)
    limited = BatchIndexSampler(n=100, batch_size=10, shuffle=True, seed=3, limit=3)
    assert len(limited) == 3
    assert [b.tolist() for b in limited] == [b.tolist() for b in list(plain)[:3]]
    blocks = BatchIndexSampler(
        n=100, batch_size=10, shuffle=True, seed=3, limit=3, block_end=_blocks(2)
    )
    assert _sizes(list(blocks)) == [2, 1]


def test_a_block_is_gathered_into_the_same_batches():
    gen = torch.Generator().manual_seed(0)
    split = Split(torch.randn(50, 784, generator=gen), torch.randint(0, 10, (50,), generator=gen))
    ds = TensorBatches(split)
    idx = list(torch.randperm(50, generator=gen).split(16))
    block = ds[idx]
    assert len(block) == 4
    for (x, y), i in zip(block, idx, strict=True):
        bx, by = ds[i]
        assert torch.equal(x, bx) and torch.equal(y, by)


def test_datamodule_yields_blocks_of_steps_and_limits_in_batches():
    dm = MNISTDataModule(name="synthetic", batch_size=64, val_size=200, limit_train_batches=7)
    dm.setup()
    assert sum(1 for _ in dm.train_dataloader()) == 7  # without a schedule: one step a batch
    dm.schedule = Schedule(7, 14, None, False, 1, True, 5)  # the run's: 2 epochs of 7 steps
    blocks = list(dm.train_dataloader())
    assert _sizes(blocks) == [5, 2]
    x, y = blocks[0][0]
    assert x.shape == (64, 784) and y.shape == (64,)
    dm.schedule, dm.limit_train_batches = None, 0.5  # a fraction of the 13 batches
    assert sum(1 for _ in dm.train_dataloader()) == 6


def test_train_loader_yields_whole_batches_by_index():
    dm = MNISTDataModule(name="synthetic", batch_size=64, val_size=200)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 784) and y.shape == (64,)
    assert len(dm.train_dataloader()) == 13  # ceil(800 / 64)


def test_offline_fallback_uses_the_embedded_digits(tmp_path):
    dm = MNISTDataModule(root=tmp_path, download=False, fallback=True)
    with pytest.warns(UserWarning, match="FALLING BACK"):
        dm.setup()
    assert dm.dataset_name == EMBEDDED_NAME
    assert dm.sizes == {"train": 3500, "val": 500, "test": 1000}
    assert (tmp_path / f"{EMBEDDED_NAME}.pt").is_file()  # parsed once, cached
    assert torch.bincount(torch.cat([dm.train.y, dm.val.y, dm.test.y])).tolist() == [500] * 10
    again = MNISTDataModule(root=tmp_path, download=False)
    with pytest.warns(UserWarning):
        again.setup()
    torch.testing.assert_close(again.test.x, dm.test.x)


def test_offline_without_fallback_says_where_to_put_the_files(tmp_path):
    dm = MNISTDataModule(root=tmp_path, download=False, fallback=False)
    with pytest.raises(DataError) as err:
        dm.setup()
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert all(name in message for name in MNIST_FILES)


@pytest.mark.mnist
def test_real_mnist_splits_and_statistics(mnist_root):
    dm = MNISTDataModule(root=mnist_root, download=False, fallback=False)
    dm.setup()
    assert dm.dataset_name == "mnist"
    assert dm.sizes == {"train": 55000, "val": 5000, "test": 10000}
    full = torch.cat([dm.train.x, dm.val.x])
    # (0.1307, 0.3081) are the mean and std of the 60,000 training pixels/255 (to 4 digits)
    assert abs(full.mean().item()) < 5e-4 / MNIST_STD
    assert abs(full.std().item() - 1) < 5e-4 / MNIST_STD
    keep, out = split_indices(60000, 5000, seed=0)
    raw = mnist_root / "MNIST" / "raw"
    images = torch.from_numpy(read_mnist_file(raw, "train-images-idx3-ubyte").array)
    torch.testing.assert_close(dm.val.x, normalize(images[out]))
    torch.testing.assert_close(dm.train.x, normalize(images[keep]))


def test_under_a_trainer_the_tensors_and_indices_move_to_its_device():
    """No GPU here: the meta device stands in for it (tensors with a device and no data)."""
    from types import SimpleNamespace

    dm = MNISTDataModule(name="synthetic", batch_size=64, val_size=200)
    dm.setup()
    dm.schedule = Schedule(13, 13, None, False, 1, True, 5)
    meta = torch.device("meta")
    progress = SimpleNamespace(current=SimpleNamespace(processed=0))
    dm.trainer = SimpleNamespace(
        strategy=SimpleNamespace(root_device=meta),
        global_step=0,
        fit_loop=SimpleNamespace(epoch_progress=progress),
    )
    block = next(iter(dm.train_dataloader()))
    assert dm.train.x.device == meta and all(x.device == meta for x, _ in block)
    assert dm.train_dataloader().sampler.device == meta  # the order is moved once per epoch
    x, y = next(iter(dm.val_dataloader()))
    assert x.device == y.device == meta and dm.val.x.device == meta
    assert next(iter(dm.test_dataloader()))[0].device == meta
