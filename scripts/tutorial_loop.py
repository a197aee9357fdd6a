"""The tutorial's own training loop, timed: the baseline initlab's speed is compared with.

    python scripts/tutorial_loop.py --data-root ../shared/data --epochs 5

The loop is the tutorial's code as written (torchvision transforms, DataLoader with batch 64 and
shuffle, SGD lr 0.01 momentum 0.5, PyTorch's default init; the network is tutorial_net.Net), with
a timer around the training loop only. Prints training samples/s and test accuracy; writes
nothing. The arguments are checked before torch is imported (seconds), so a bad one is refused
at once.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (an epoch count, a batch size)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def directory(text: str) -> str:
    """An argparse type: an existing directory (the folder that holds MNIST/raw)."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a directory (give the one with MNIST/raw)")
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked (argparse: usage and one line, exit status 2)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data-root", required=True, type=directory,
                        help="folder holding MNIST/raw")  # fmt: skip
    parser.add_argument("--epochs", type=positive_int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)  # before torch: a bad argument is refused in a fraction of a second
    import torch
    import torch.nn as nn
    import torch.optim as optim
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms
    from tutorial_net import Net

    torch.manual_seed(args.seed)

    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    trainset = datasets.MNIST(args.data_root, train=True, download=False, transform=transform)
    trainloader = DataLoader(trainset, batch_size=64, shuffle=True)
    testset = datasets.MNIST(args.data_root, train=False, download=False, transform=transform)
    testloader = DataLoader(testset, batch_size=64, shuffle=True)

    model = Net()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.5)

    samples, t0 = 0, time.perf_counter()
    for epoch in range(args.epochs):
        running_loss = 0.0
        for images, labels in trainloader:
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            samples += len(labels)
        print(f"Epoch {epoch + 1}, Loss: {running_loss / len(trainloader)}")
    train_s = time.perf_counter() - t0

    with torch.no_grad():
        correct_count, all_count = 0, 0
        for images, labels in testloader:
            outputs = model(images)
            _, predicted = torch.max(outputs.data, 1)
            correct_count += (predicted == labels).sum().item()
            all_count += labels.size(0)
    print(f"test_acc {correct_count / all_count:.4f}")
    print(f"train_samples_per_s {samples / train_s:,.0f} ({samples} samples in {train_s:.1f} s)")


if __name__ == "__main__":
    main()
