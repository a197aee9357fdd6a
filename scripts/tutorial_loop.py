"""The tutorial's own training loop, timed: the baseline initlab's speed is compared with.

    python scripts/tutorial_loop.py --data-root ../shared/data --epochs 5

The loop is the tutorial's code as written (torchvision transforms, DataLoader with batch 64 and
shuffle, SGD lr 0.01 momentum 0.5, PyTorch's default init), with a timer around the training
loop only. Prints training samples/s and test accuracy; writes nothing.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 512)
        self.fc2 = nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x):
        x = x.view(-1, 28 * 28)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        x = self.fc3(x)
        return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="folder holding MNIST/raw")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
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
