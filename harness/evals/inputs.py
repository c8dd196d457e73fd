"""Inputs as GradBench draws them: ``np.random.seed(31337)`` then ``np.random.rand`` (here
``np.random.RandomState(31337)``, the same stream; GradBench draws its sizes one after another
from it, so only its first size sees the same numbers)."""

from __future__ import annotations

import numpy as np

SEED = 31337
"""GradBench's seed for every eval's inputs."""


def draw(n: int) -> np.ndarray:
    """``n`` uniform numbers in [0, 1), as GradBench draws an eval's input."""
    return np.random.RandomState(SEED).rand(n)
