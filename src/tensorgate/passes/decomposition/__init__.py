"""Decomposition algorithms, as pure NumPy functions of a matrix and its tensorization:
TT-SVD (``tt_svd``), block-term HOOI fitted block by block (``bt_als``) and HT-SVD
(``ht_svd``); each returns a ``Decomposition`` (the map, the ranks it uses, its relative
error).  ``factorize`` chooses the tensorization (factors and padding)."""

from .bt import bt_als, bt_rank_bounds
from .common import Decomposition
from .factorize import Tensorization, auto_tensorization, balanced_factors, parse_shape
from .ht import ht_rank_bounds, ht_svd
from .tt import tt_rank_bounds, tt_svd

__all__ = [
    "bt_als", "bt_rank_bounds", "Decomposition", "Tensorization", "auto_tensorization", "balanced_factors",
    "parse_shape", "ht_rank_bounds", "ht_svd", "tt_rank_bounds", "tt_svd",
]
