"""Reproductions of published experiments: Smith's CLR paper on CIFAR-10 (`clr`).

May import every layer below it (reporting, experiment, search, training); only the CLI imports it.
"""
