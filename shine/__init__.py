"""SHINE: hierarchical hard negatives (``pipeline``) and coarse-to-fine saliency ranking (``trainer``).

This package holds only what both halves share without importing each other: the ``shine`` command line
(``shine.cli``), the layered-config helpers (``shine.configs``) and the file helpers (``shine.files``).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
