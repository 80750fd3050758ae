"""The package list, found rather than typed (the metadata lives in setup.cfg).

``kernels/`` sits at the top of the repository, where a reader finds the kernel
sources, but installs as ``minires.kernels``: no generic top-level import name
lands in site-packages.  setup.cfg's ``find:`` cannot look inside a remapped
folder, so the packages are found here, under both roots.
"""
from setuptools import find_packages, setup

KERNELS = "minires.kernels"

setup(packages=[*find_packages(include=["minires", "minires.*"]),
                KERNELS, *(f"{KERNELS}.{name}" for name in find_packages("kernels"))])
