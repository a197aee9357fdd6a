"""initlab: how parameter initialization shapes neural-network training."""

__version__ = "0.1.0"
