"""Distributed gradients: the ``logistic`` loss's value and gradient with the data sharded over a
world of devices or processes, on each framework's own engine, validated and then timed
(``python -m harness scale``).

Three kinds of process share this layer: the driver plans the worlds (`plan`) and reports their
`records`; the runner's child for one world (`launch`) starts its ranks; each rank (`worker`)
computes, validates and times on the seeded `data`. The launcher and the ranks talk through the
world's `folder`; `faults` are the tests' planted ones.
"""
