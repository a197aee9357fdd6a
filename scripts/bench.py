"""Training throughput side by side: the tutorial's loop, a plain PyTorch loop, and initlab.

    python scripts/bench.py --data-root ../shared/data                 # CPU, 1 epoch x 3 repeats
    python scripts/bench.py --data-root ../shared/data --device cuda --epochs 2

Variants, on the same MNIST tensors and the tutorial's network and optimizer (784-512-256-10
ReLU, SGD lr 0.01 momentum 0.5, batch 64), run in one process and interleaved (A B C D A B C D
...) so that a noisy machine slows them alike:

    A  the tutorial's own loop (torchvision transforms + DataLoader), as the tutorial writes it
    B  a plain loop over the pre-normalized in-memory tensors, one indexing op per batch
    C  initlab as train.py runs it (Lightning, default callbacks, logging, diagnostics)
    D  C with diagnostics off and logging reduced to the minimum

Reported: training samples/s (median, min-max over repeats) and ratios, the fp32 GEMM rate of
this machine and each variant's share of the FLOP-bound rate (2.41 MFLOP per training sample),
the start-up time of `python train.py` to its first training step, and peak memory. A table on
stdout and bench.json (--out). --tiny runs a few batches of synthetic data (for tests). The
arguments are checked before torch is imported (seconds): a bad one is refused at once.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # the tutorial's loop and network live beside it

# torch-free: argument types; the network (tutorial_net) and initlab's data and run modules
# import torch, so each function imports what it trains with once the arguments have passed
from tutorial_loop import directory, positive_int  # noqa: E402

if TYPE_CHECKING:
    import torch

# forward 2 x 535,040 multiply-adds; backward the same for the weight gradients, plus the input
# gradients of layers 2 and 3 (layer 1's input needs none): 1.07 + 1.07 + 0.27 MFLOP
FLOP_PER_SAMPLE = 2.41e6


def tutorial_loop(root: str, epochs: int, bs: int, device: str, limit: int | None) -> float:
    """A: the tutorial's code (transforms, DataLoader, default init); training samples/s."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms
    from tutorial_net import Net

    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    trainset = datasets.MNIST(root, train=True, download=False, transform=transform)
    trainloader = DataLoader(trainset, batch_size=bs, shuffle=True)
    model = Net().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    samples, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        running_loss = 0.0
        for i, (images, labels) in enumerate(trainloader):
            if limit is not None and i >= limit:
                break
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            samples += len(labels)
    _sync(device)
    return samples / (time.perf_counter() - t0)


def plain_loop(x: torch.Tensor, y: torch.Tensor, epochs: int, bs: int, limit: int | None) -> float:
    """B: the overhead-free reference: in-memory tensors, one indexing op per batch."""
    import torch
    import torch.nn.functional as F
    from tutorial_net import Net

    torch.manual_seed(0)
    model = Net().to(x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    samples, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for i, idx in enumerate(torch.randperm(len(y), device=x.device).split(bs)):
            if limit is not None and i >= limit:
                break
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
            samples += len(idx)
    _sync(x.device.type)
    return samples / (time.perf_counter() - t0)


def initlab_run(args: argparse.Namespace, root: str, minimal: bool, out: Path) -> dict:
    """C / D: initlab.run.run with the default config (D: diagnostics and logging minimal);
    the run's ``timing`` record."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from initlab.run import run

    overrides = [
        f"data.root={root}",
        f"trainer.max_epochs={args.epochs}",
        f"data.batch_size={args.batch_size}",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        "progress_bar=false",
    ]
    if args.tiny:
        overrides += ["data=synthetic", f"+trainer.limit_train_batches={args.tiny}"]
    if minimal:
        overrides += ["diagnostics=off", "logger=none", "trainer.log_every_n_steps=1000000"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    record = run(cfg, out, instantiate(cfg.optimizer))  # the optimizer as train.py makes it
    return record["timing"]


def gemm_flops(device: str, n: int = 1024, repeat: int = 20) -> float:
    """The machine's fp32 matrix-multiply rate (FLOP/s), the bound for this MLP."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        a @ b
    _sync(device)
    return 2 * n**3 * repeat / (time.perf_counter() - t0)


def startup_seconds(data: list[str], device: str) -> float:
    """Wall time of `python train.py` from launch to the end of its first training step."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-u", str(ROOT / "train.py"), *data,
             "+trainer.max_steps=1", "trainer.num_sanity_val_steps=0",
             "+trainer.limit_val_batches=1", "diagnostics=off", "logger=none",
             f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
             "progress_bar=false", f"hydra.run.dir={tmp}/run"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp,
        )  # fmt: skip
        seconds, lines = None, []
        for line in proc.stdout:
            lines.append(line)
            if seconds is None and re.search(r"epoch 1/\S+ step 1 ", line):
                seconds = time.perf_counter() - t0
        proc.wait()
    if seconds is None:
        raise RuntimeError("train.py never reported its first step:\n" + "".join(lines[-20:]))
    return seconds


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def variants(text: str) -> str:
    """An argparse type: some of the variants A, B, C, D, each once, in the order to run them."""
    if not text or set(text) - set("ABCD") or len(set(text)) != len(text):
        raise argparse.ArgumentTypeError(f"{text!r} must be some of A, B, C, D, each once")
    return text


def count(text: str) -> int:
    """An argparse type: an integer >= 0 (--tiny's batches; 0: off)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--epochs", type=positive_int, default=1)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--data-root", type=directory,
                        help="folder holding MNIST/raw (default: synthetic)")  # fmt: skip
    parser.add_argument("--repeat", type=positive_int, default=3)
    parser.add_argument("--variants", type=variants, default="ABCD")
    parser.add_argument("--out", type=Path, default=None, help="bench.json path")
    parser.add_argument("--tiny", type=count, default=0, metavar="N",
                        help="N batches per epoch on synthetic data: a smoke test")  # fmt: skip
    args = parser.parse_args()  # before torch: a bad argument is refused at once
    import torch

    from initlab.data import MNISTDataModule, write_synthetic_mnist
    from initlab.results import write_json_atomic

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    out = args.out or ROOT / "outputs" / "bench" / time.strftime("%Y-%m-%d_%H-%M-%S") / "bench.json"
    limit = args.tiny or None

    with tempfile.TemporaryDirectory(prefix="initlab-bench-") as tmp:
        root = args.data_root
        if args.tiny or root is None:  # synthetic IDX files, read by torchvision as MNIST is
            root = str(write_synthetic_mnist(Path(tmp) / "data", n_train=1000, n_test=200))
            dm = MNISTDataModule(name="synthetic", val_size=200)
        else:
            dm = MNISTDataModule(root=root, download=False, fallback=False)
        dm.setup()
        x, y = dm.train.x.to(args.device), dm.train.y.to(args.device)
        runs = {
            "A": lambda: tutorial_loop(root, args.epochs, args.batch_size, args.device, limit),
            "B": lambda: plain_loop(x, y, args.epochs, args.batch_size, limit),
            "C": lambda: initlab_run(args, root, False, Path(tmp) / f"C{time.time_ns()}"),
            "D": lambda: initlab_run(args, root, True, Path(tmp) / f"D{time.time_ns()}"),
        }
        rates: dict[str, list[float]] = {v: [] for v in args.variants}
        eval_shares: list[float] = []  # C's validation + test time over its training time
        for r in range(args.repeat):
            for v in args.variants:
                result = runs[v]()
                if isinstance(result, dict):  # an initlab run's timing
                    if v == "C":
                        evaluation = result["val_s"] + result["test_s"]
                        eval_shares.append(evaluation / result["train_s"])
                    result = result["train_samples_per_s"]
                rates[v].append(result)
                print(f"repeat {r + 1}/{args.repeat} {v}: {rates[v][-1]:,.0f} samples/s",
                      flush=True)  # fmt: skip
        gemm = gemm_flops(args.device)
        data = ["data=synthetic"] if args.tiny or not args.data_root else [f"data.root={root}"]
        startup = startup_seconds(data, args.device)

    stats = {v: _summary(rates[v]) for v in rates}
    med = {v: s["median"] for v, s in stats.items()}
    pairs = [(a, b) for a, b in [("C", "A"), ("C", "B"), ("B", "A"), ("D", "B"), ("C", "D")]
             if a in med and b in med]  # fmt: skip
    ratios = {f"{a}/{b}": med[a] / med[b] for a, b in pairs}
    # each repeat's ratio, its variants run back to back: a slow spell of a shared machine
    # slows both sides, so the median of these is steadier than the ratio of medians
    paired = {
        f"{a}/{b}": statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True))
        for a, b in pairs
    }
    ideal = gemm / FLOP_PER_SAMPLE
    report = {
        "device": args.device,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        },  # fmt: skip
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "repeat": args.repeat,
        "tiny": args.tiny,
        "samples_per_s": stats,
        "samples_per_s_per_repeat": rates,
        "eval_over_train_time_C": _summary(eval_shares) if eval_shares else None,
        "ratios": ratios,
        "paired_ratios": paired,
        "gemm_flop_per_s": gemm,
        "flop_bound_samples_per_s": ideal,
        "fraction_of_flop_bound": {v: med[v] / ideal for v in med},
        "startup_to_first_step_s": startup,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_mb": (
            torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None
        ),
    }
    write_json_atomic(out, report)

    names = {"A": "tutorial loop", "B": "plain loop", "C": "initlab", "D": "initlab, minimal"}
    print(f"\n{'variant':<22}{'samples/s (median)':>20}{'min-max':>22}{'of FLOP bound':>15}")
    for v, s in stats.items():
        span = f"{s['min']:,.0f}-{s['max']:,.0f}"
        frac = f"{med[v] / ideal:.1%}"
        print(f"{v} {names[v]:<20}{s['median']:>20,.0f}{span:>22}{frac:>15}")
    print("ratios of medians: " + ", ".join(f"{k} {val:.2f}" for k, val in ratios.items()))
    print("medians of per-repeat ratios: "
          + ", ".join(f"{k} {val:.2f}" for k, val in paired.items()))  # fmt: skip
    if eval_shares:
        e = report["eval_over_train_time_C"]
        print(f"C: validation + test take {e['median']:.1%} of its training time "
              f"({e['min']:.1%}-{e['max']:.1%})")  # fmt: skip
    print(f"fp32 GEMM {gemm / 1e9:.1f} GFLOP/s -> FLOP bound {ideal:,.0f} samples/s")
    print(f"start-up of train.py to its first step: {startup:.1f} s")
    print(f"peak RSS {report['peak_rss_mb']:.0f} MB -> {out}")


if __name__ == "__main__":
    main()
