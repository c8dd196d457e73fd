"""Distributed gradients: data-parallel worlds of ranks, their plan, launch, workers and records."""
