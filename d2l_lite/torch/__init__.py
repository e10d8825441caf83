"""GoogLeNet in PyTorch (``from d2l_lite import torch as d2l``): the code the
chapters save (:mod:`.book`), the model against its description
(:mod:`.model`), training (:mod:`.train`), FLOPs and timing (:mod:`.flops`),
data parallelism (:mod:`.parallel`), and :data:`BACKEND`, the uniform
interface (:mod:`.backend`)."""

from .backend import BACKEND, TorchBackend  # noqa: F401
from .book import *  # noqa: F401,F403
from .flops import *  # noqa: F401,F403
from .model import *  # noqa: F401,F403
from .parallel import *  # noqa: F401,F403
from .train import *  # noqa: F401,F403
