"""Runtimes: the NumPy executor (float and, later, bit-exact fixed point) and the Verilator simulator."""
