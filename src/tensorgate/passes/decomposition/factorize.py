"""Tensorizations: how an ``out_dim × in_dim`` matrix is viewed as a tensor, chosen
automatically or from a shape text.

A tensorization factors ``out_dim + out_pad = m_1⋯m_d`` and ``in_dim + in_pad = n_1⋯n_d``.
The shape text lists the input factors first, as in the papers' ``57600 = 8·20·20·18``
input and ``1024 = 16·4·4·4`` output: ``8x20x20x18:16x4x4x4``.

Automatic factorization picks the most balanced factors (smallest largest factor, then
largest smallest factor).  A size with no balanced factorization — a prime, or one with a
large prime factor, such as 61056 = 2⁷·3²·53 for four factors — is padded with zeros to
the nearest size that has one, or rejected with an error that suggests a shape.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...errors import PassError

BALANCE_LIMIT = 2.0
"""A factorization of ``s`` into ``d`` factors is *balanced* when its largest factor is at
most ``BALANCE_LIMIT · s^(1/d)``."""

_SHAPE = re.compile(r"\d+(x\d+)*:\d+(x\d+)*")


@dataclass(frozen=True)
class Tensorization:
    """The factors (and zero padding) that tensorize a matrix ``W[out_dim, in_dim]``."""

    out_factors: tuple[int, ...]
    in_factors: tuple[int, ...]
    out_pad: int = 0
    in_pad: int = 0

    @property
    def d(self) -> int:
        return len(self.out_factors)

    @property
    def out_dim(self) -> int:
        return math.prod(self.out_factors) - self.out_pad

    @property
    def in_dim(self) -> int:
        return math.prod(self.in_factors) - self.in_pad

    @property
    def mode_sizes(self) -> tuple[int, ...]:
        """``p_k = m_k · n_k``: the size of mode ``k`` of the tensorized matrix."""
        return tuple(m * n for m, n in zip(self.out_factors, self.in_factors))

    def __str__(self) -> str:
        return "x".join(map(str, self.in_factors)) + ":" + "x".join(map(str, self.out_factors))

    def describe(self) -> str:
        """The shape text with the padding, for reports: ``16x8x9x53:4x4x4x6 (in_pad 12)``."""
        pads = [f"{key} {value}" for key, value in (("out_pad", self.out_pad), ("in_pad", self.in_pad)) if value]
        return str(self) + (f" ({', '.join(pads)})" if pads else "")

    def check_matrix(self, shape: tuple[int, ...]) -> None:
        """Raise ``PassError`` unless a matrix of ``shape`` fits this tensorization."""
        if len(shape) != 2 or shape != (self.out_dim, self.in_dim):
            raise PassError(f"shape {self.describe()} tensorizes a {self.out_dim}x{self.in_dim} matrix, "
                            f"not one of shape {'x'.join(map(str, shape))}")

    def tensor(self, matrix: np.ndarray) -> np.ndarray:
        """``W`` zero-padded and reordered into a float64 tensor of shape ``mode_sizes``
        whose mode ``k`` indexes ``(i_k, j_k)`` row-major."""
        self.check_matrix(matrix.shape)
        if self.out_pad or self.in_pad:
            matrix = np.pad(matrix, ((0, self.out_pad), (0, self.in_pad)))
        interleaved = matrix.reshape(self.out_factors + self.in_factors).transpose(
            [axis for k in range(self.d) for axis in (k, self.d + k)])
        return np.array(interleaved, dtype=np.float64, order="C").reshape(self.mode_sizes)


def shape_factors(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(in_factors, out_factors)`` of a shape text ``n_1x…xn_d:m_1x…xm_d``."""
    if not _SHAPE.fullmatch(text):
        raise PassError(f"shape '{text}' is not of the form N1xN2x…:M1xM2x… (input factors : output factors)")
    in_text, out_text = text.split(":")
    in_factors = tuple(int(f) for f in in_text.split("x"))
    out_factors = tuple(int(f) for f in out_text.split("x"))
    if len(in_factors) != len(out_factors):
        raise PassError(f"shape '{text}' has {len(in_factors)} input factors but {len(out_factors)} output factors")
    if min(in_factors + out_factors) < 1:
        raise PassError(f"shape '{text}' has a zero factor")
    return in_factors, out_factors


def parse_shape(text: str, out_dim: int, in_dim: int) -> Tensorization:
    """The tensorization spelled ``n_1x…xn_d:m_1x…xm_d`` (input factors first); the
    factors must multiply to the matrix's sizes exactly."""
    in_factors, out_factors = shape_factors(text)
    for side, factors, dim in (("input", in_factors, in_dim), ("output", out_factors, out_dim)):
        if math.prod(factors) != dim:
            raise PassError(f"shape '{text}': the {side} factors multiply to {math.prod(factors)}, "
                            f"but the matrix has {dim} {'columns' if side == 'input' else 'rows'}")
    return Tensorization(out_factors, in_factors)


def auto_tensorization(out_dim: int, in_dim: int, d: int, allow_pad: bool = True) -> Tensorization:
    """Balanced factors of both sizes into ``d`` modes, padding a size that has none.

    The output factors are sorted largest first and the input factors smallest first,
    so the mode sizes ``m_k n_k`` are balanced too.  With ``allow_pad=False`` a size that
    needs padding is an error naming a shape that would work.
    """
    if d < 1:
        raise PassError(f"the number of modes d must be at least 1, got {d}")
    most = max_modes(out_dim, in_dim)
    if d > most:
        raise PassError(f"d={d} modes is too many for a {out_dim}x{in_dim} map: every mode needs a factor of "
                        f"at least 2 on its larger side, so d can be at most {most}")
    out_factors, out_pad = balanced_factors(out_dim, d)
    in_factors, in_pad = balanced_factors(in_dim, d)
    found = Tensorization(tuple(sorted(out_factors, reverse=True)), tuple(sorted(in_factors)), out_pad, in_pad)
    if (out_pad or in_pad) and not allow_pad:
        sizes = ", ".join(f"{dim} = {'·'.join(map(str, _prime_factors(dim)))}"
                          for dim, pad in ((in_dim, in_pad), (out_dim, out_pad)) if pad)
        raise PassError(f"{sizes} has no balanced factorization into {d} factors; allow padding "
                        f"(it would use {found.describe()}) or give an explicit shape")
    return found


def max_modes(out_dim: int, in_dim: int) -> int:
    """The most modes an automatic shape gives a map: every mode needs a factor of at least
    2 on the map's larger side."""
    return max(max(out_dim, in_dim).bit_length() - 1, 1)


def balanced_factors(size: int, d: int) -> tuple[tuple[int, ...], int]:
    """``(factors, pad)``: the most balanced ``d`` factors of ``size + pad``, for the
    smallest ``pad ≥ 0`` whose size has a balanced factorization."""
    if size < 1:
        raise PassError(f"cannot factor a dimension of size {size}")
    padded = size
    while True:
        factors = _most_balanced(padded, d)
        if factors[0] <= BALANCE_LIMIT * padded ** (1 / d) + 1e-9:
            return factors, padded - size
        padded += 1


@lru_cache(maxsize=4096)
def _most_balanced(size: int, d: int) -> tuple[int, ...]:
    """The factorization of ``size`` into ``d`` factors (largest first) with the smallest
    largest factor, ties broken by the largest smallest factor."""
    best: tuple[int, ...] | None = None

    def search(remaining: int, parts: int, ceiling: int, chosen: tuple[int, ...]) -> None:
        nonlocal best
        if parts == 1:
            if remaining <= ceiling:
                candidate = chosen + (remaining,)
                if best is None or (candidate[0], -candidate[-1]) < (best[0], -best[-1]):
                    best = candidate
            return
        for factor in _divisors(remaining):
            if factor > ceiling or (best is not None and chosen == () and factor > best[0]):
                break
            if factor ** parts >= remaining:
                search(remaining // factor, parts - 1, factor, chosen + (factor,))

    search(size, d, size, ())
    assert best is not None
    return best


def _divisors(n: int) -> list[int]:
    small = [k for k in range(1, math.isqrt(n) + 1) if n % k == 0]
    return sorted(set(small + [n // k for k in small]))


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors + ([n] if n > 1 else [])
