"""The tutorial's network, as it writes it: 784-512-256-10, ReLU, PyTorch's default init.

Trained by scripts/tutorial_loop.py (the tutorial's loop) and scripts/bench.py (beside initlab).
A module of its own, imported once their command lines have been parsed: torch takes seconds to
load, which a refusal of a bad argument does not wait for.
"""

from __future__ import annotations

import torch
import torch.nn as nn


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
