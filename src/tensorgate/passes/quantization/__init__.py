"""What the ``quantize`` pass measures: calibration ranges from float runs
(``calibrate``) and the report of a quantized module against its float original
(``report``)."""
