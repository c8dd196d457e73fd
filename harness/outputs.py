"""Whatever a user's function returns, as one flat real vector: what `harness.check` differentiates.

A function may return a tensor of any shape, a number, or a pytree (tuples, lists, dicts) of
them. Its `Layout`, read once at the checked point, lists each leaf's shape and kind: a real
leaf is raveled, a complex one contributes its real parts and then its imaginary parts (the
derivative of a complex output is checked as that of its two real parts), and an integer or
boolean leaf (an index, a count) is left out as not differentiable. The same layout flattens the
leaves inside a framework's trace (`flat`) and on the host (`flat_numpy`), so the forward and
reverse strategies and the oracles see the same vector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.pytree import leaves

REAL, COMPLEX, INTEGER, CONSTANT = "real", "complex", "integer", "constant"
"""Kinds of output leaves; ``constant``: one the framework records as not differentiable."""


class LayoutChanged(ValueError):
    """The function returned another structure, shape or kind than at the checked point (as
    ``torch.stft`` does given complex input): that evaluation cannot serve as an oracle."""


def kind(leaf: Any) -> str:
    """``real``, ``complex`` or ``integer`` (booleans too) for an array of any framework or a number."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        return COMPLEX if isinstance(leaf, complex) else REAL if isinstance(leaf, float) else INTEGER
    # torch and TensorFlow dtypes say what they are; numpy's, JAX's and autograd's are numpy dtypes.
    if getattr(dtype, "is_complex", False) is True:
        return COMPLEX
    if getattr(dtype, "is_floating_point", False) is True or getattr(dtype, "is_floating", False) is True:
        return REAL
    if hasattr(dtype, "is_floating_point") or hasattr(dtype, "is_floating"):
        return INTEGER
    found = np.dtype(dtype).kind
    return COMPLEX if found == "c" else REAL if found == "f" else INTEGER


@dataclass(frozen=True)
class Layout:
    """The leaves a function returned at the checked point: ``(shape, kind)`` each, in `leaves` order."""

    parts: tuple[tuple[tuple[int, ...], str], ...]

    @classmethod
    def of(cls, result: Any) -> Layout:
        return cls(tuple((tuple(np.shape(leaf)), kind(leaf)) for leaf in leaves(result)))

    def without(self, differentiable: list[bool]) -> Layout:
        """The layout with the leaves the framework does not differentiate left out, as
        gradcheck leaves them out: where it differentiates at least one (where it differentiates
        none, all are kept, so that a function cut off from its input shows a zero derivative)."""
        if not any(differentiable) or len(differentiable) != len(self.parts):
            return self
        return Layout(tuple((s, k if d or k == INTEGER else CONSTANT)
                            for (s, k), d in zip(self.parts, differentiable, strict=True)))  # fmt: skip

    @property
    def size(self) -> int:
        """Entries of the flat real vector."""
        return sum(
            int(np.prod(s)) * (2 if k == COMPLEX else 1) for s, k in self.parts if k in (REAL, COMPLEX)
        )

    @property
    def has_complex(self) -> bool:
        return any(k == COMPLEX for _, k in self.parts)

    @property
    def dropped(self) -> int:
        """How many leaves were left out as integers."""
        return sum(k == INTEGER for _, k in self.parts)

    @property
    def notes(self) -> list[str]:
        """What was done to the outputs beyond raveling them: complex parts, leaves left out."""
        found = []
        if self.has_complex:
            found.append("complex outputs as real and imaginary parts")
        if self.dropped:
            found.append(f"{self.dropped} integer output(s) left out as not differentiable")
        constant = sum(k == CONSTANT for _, k in self.parts)
        if constant:
            found.append(f"{constant} output(s) the framework marks not differentiable left out")
        return found

    def describe(self) -> str:
        """For the report: what was differentiated."""
        shapes = ", ".join(f"{k} {s}" for s, k in self.parts) or "nothing"
        return f"outputs {shapes}" + (f" ({'; '.join(self.notes)})" if self.notes else "")

    def _pieces(self, result: Any, real: Callable, imag: Callable, ravel: Callable) -> list:
        found = list(leaves(result))
        if len(found) != len(self.parts):
            raise LayoutChanged(f"{len(found)} outputs where the checked point gave {len(self.parts)}")
        pieces = []
        for leaf, (shape, k) in zip(found, self.parts, strict=True):
            if tuple(np.shape(leaf)) != shape:
                raise LayoutChanged(
                    f"an output of shape {tuple(np.shape(leaf))} where the point gave {shape}"
                )
            if k == COMPLEX:
                pieces += [ravel(real(leaf)), ravel(imag(leaf))]
            elif k == REAL:
                pieces.append(ravel(leaf))
        return pieces

    def flat(self, xp: Any, result: Any) -> Any:
        """The flat real vector in the framework's namespace ``xp`` (differentiable)."""
        pieces = self._pieces(result, xp.real, xp.imag, lambda a: xp.reshape(a, (-1,)))
        concat = getattr(xp, "concat", None) or xp.concatenate
        if len(pieces) == 1:
            return pieces[0]
        return concat(pieces) if pieces else xp.zeros((0,))

    def flat_numpy(self, result: Any, keep_complex: bool = False) -> np.ndarray:
        """The flat vector on the host (numpy leaves). ``keep_complex``: a real leaf evaluated at
        complex input stays complex (the complex step reads its imaginary part)."""
        pieces = self._pieces(result, np.real, np.imag, np.ravel)
        if not pieces:
            return np.zeros(0)
        joined = np.concatenate([np.asarray(p) for p in pieces])
        return joined if keep_complex and np.iscomplexobj(joined) else joined.real.astype(np.float64)
