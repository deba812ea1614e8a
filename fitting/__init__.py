"""fitting: gradient-based fitting of hhjax models to recorded voltage traces (Optax).

Depends on hhjax and optax; hhjax never imports fitting.
"""

from . import losses as losses
from .data import Recording as Recording
from .data import load as load
from .data import load_abf as load_abf
from .data import load_csv as load_csv
from .data import load_npz as load_npz
from .optimize import FitResult as FitResult
from .optimize import default_optimizer as default_optimizer
from .optimize import fit as fit
from .params import FreeParams as FreeParams
from .params import default_bounds as default_bounds
from .params import make_free as make_free
from .uncertainty import IdentifiabilityWarning as IdentifiabilityWarning
from .uncertainty import StandardErrors as StandardErrors
from .uncertainty import standard_errors as standard_errors

__all__ = [
    "FitResult",
    "FreeParams",
    "IdentifiabilityWarning",
    "Recording",
    "StandardErrors",
    "default_bounds",
    "default_optimizer",
    "fit",
    "load",
    "load_abf",
    "load_csv",
    "load_npz",
    "losses",
    "make_free",
    "standard_errors",
]
