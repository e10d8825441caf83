"""GoogLeNet in JAX/Flax (linen): ``from d2l_lite import jax as d2l`` gives the
chapters' saved code (:mod:`.book`) and the helpers of the checks and
experiments (:mod:`.model`, :mod:`.train`, :mod:`.flops`, :mod:`.parallel`);
:data:`BACKEND` is the package behind :class:`d2l_lite.backend.Backend`."""

from .backend import BACKEND, JaxBackend, Model  # noqa: F401
from .book import *  # noqa: F401,F403
from .flops import *  # noqa: F401,F403
from .model import *  # noqa: F401,F403
from .parallel import *  # noqa: F401,F403
from .train import *  # noqa: F401,F403
