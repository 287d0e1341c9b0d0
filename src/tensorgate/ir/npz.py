"""Reading ``.npz`` and ``.npy`` files that may be hostile, without pickle and without
allocating what their headers merely claim.

``np.load`` allocates an array of the shape its header declares before reading the data,
so a 300-byte file declaring shape (2**40, 8, 8) asks for 16 TiB.  Here every array's
header is read first: its declared size must equal the bytes the file actually holds for
it, and all arrays together must fit in half this machine's memory.  Only then is it
loaded.  Every problem raises the caller's error class with one line naming the file.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from ..errors import TensorgateError

HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}


def memory_limit() -> int:
    """Bytes the arrays of one file may take: half the physical memory."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 1 << 32


def _declared(file, name: str, stored: int, error: type[TensorgateError], where: str) -> int:
    """The bytes the array header at ``file``'s position declares; it must match the
    ``stored`` bytes of this member (header included)."""
    try:
        version = npy_format.read_magic(file)
        if version not in HEADER_READERS:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
        shape, _, dtype = HEADER_READERS[version](file)
    except (ValueError, EOFError, OSError) as exc:
        raise error(f"{where}: array '{name}' has no valid .npy header ({exc})") from None
    if dtype.hasobject:
        raise error(f"{where}: array '{name}' holds Python objects, which are not loaded (no pickle)")
    declared = math.prod(shape) * dtype.itemsize
    held = stored - file.tell()
    if declared != held:
        raise error(f"{where}: array '{name}' declares shape {tuple(shape)} of {dtype} ({declared:,} bytes) "
                    f"but holds {held:,} bytes")
    return declared


def _check_total(total: int, error: type[TensorgateError], where: str) -> None:
    if total > memory_limit():
        raise error(f"{where}: its arrays take {total:,} bytes, more than half this machine's memory")


def read_npz(path: str | os.PathLike, what: str, error: type[TensorgateError] = TensorgateError
             ) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path`` by name, each header checked before loading
    (module docstring); ``what`` names the file in errors (``weights file``)."""
    where = f"{what} '{path}'"
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            total = 0
            for info in members:
                with archive.open(info) as member:
                    total += _declared(member, info.filename, info.file_size, error, where)
            _check_total(total, error, where)
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise error(f"{where} is not a readable .npz ({_reason(exc)})") from None


def read_npy(path: str | os.PathLike, what: str, error: type[TensorgateError] = TensorgateError) -> np.ndarray:
    """The array of the ``.npy`` at ``path``, its header checked before loading."""
    where = f"{what} '{path}'"
    try:
        with open(path, "rb") as file:
            _check_total(_declared(file, Path(path).name, os.fstat(file.fileno()).st_size, error, where),
                         error, where)
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise error(f"{where} is not a readable .npy ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
