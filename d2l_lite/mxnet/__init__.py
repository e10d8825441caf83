"""GoogLeNet in MXNet Gluon 1.9 (``from d2l_lite import mxnet as d2l``): the pages' saved
code (:mod:`.book`, :mod:`.parallel`), the model against its description (:mod:`.model`),
training (:mod:`.train`), FLOPs (:mod:`.flops`) and the :data:`BACKEND` object."""

from .book import *  # noqa: F401,F403
from .model import *  # noqa: F401,F403
from .train import *  # noqa: F401,F403
from .flops import *  # noqa: F401,F403
from .parallel import *  # noqa: F401,F403
from .model import _context  # noqa: F401
from .backend import BACKEND, MXNetBackend  # noqa: F401
