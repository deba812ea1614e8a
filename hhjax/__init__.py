"""hhjax: differentiable Hodgkin-Huxley neuron simulation on JAX.

Units: mV, ms, uF/cm2, mS/cm2, uA/cm2.
"""

from . import analysis as analysis
from . import hostmem as hostmem
from . import population as population
from . import presets as presets
from . import recpool as recpool
from . import stimulus as stimulus
from . import xla as xla
from .channels import AlphaBetaGate as AlphaBetaGate
from .channels import Channel as Channel
from .channels import InfTauGate as InfTauGate
from .integrators import METHODS as METHODS
from .model import Model as Model
from .model import State as State
from .model import channel_currents as channel_currents
from .model import derivatives as derivatives
from .model import resting_state as resting_state
from .model import steady_state as steady_state
from .params import get_params as get_params
from .params import set_params as set_params
from .simulate import DivergenceError as DivergenceError
from .simulate import Trace as Trace
from .simulate import simulate as simulate
from .xla import jit as jit

__version__ = "0.1.0"

hostmem.keep_freed_memory()  # at import, before JAX starts the threads that allocate

__all__ = [
    "METHODS",
    "AlphaBetaGate",
    "Channel",
    "DivergenceError",
    "InfTauGate",
    "Model",
    "State",
    "Trace",
    "analysis",
    "channel_currents",
    "derivatives",
    "get_params",
    "hostmem",
    "jit",
    "population",
    "presets",
    "recpool",
    "resting_state",
    "set_params",
    "simulate",
    "steady_state",
    "stimulus",
    "xla",
]
