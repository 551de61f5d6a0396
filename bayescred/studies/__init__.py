"""Simulation studies with known truth, run over the catalogue's models (``study`` in each
entry): :mod:`.coverage`, how often nominal premium intervals cover the true premium. The
full studies are run from ``benchmarks/``; the test suite runs their smoke versions."""
