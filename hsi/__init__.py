"""hsi: a hyperspectral remote-sensing model zoo.

One spectral-cube data layer (:class:`SpectralCube`), leak-free protocols, faithful
re-implementations of published models behind :func:`create_model`, Lightning tasks and
a command line (``hsi fit | validate | test | predict | datasets``).
"""

from hsi.data.cube import SpectralCube
from hsi.errors import ConfigError, DataError, HsiError
from hsi.models.registry import create_model, list_models

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "HsiError",
    "SpectralCube",
    "__version__",
    "create_model",
    "list_models",
]
