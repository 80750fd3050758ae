"""minires's kernels, one subpackage per device, behind one interface.

``cpu``  -- Numba (``parallel=True``, ``cache=True``), imported on demand.
``cuda`` -- CUDA C sources compiled by CuPy at first use.

Both export the same functions with the same signatures; ``minires.backend.kernels_for``
picks the module that matches the arrays.  Installed as ``minires.kernels``.
"""
