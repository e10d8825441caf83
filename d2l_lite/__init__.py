"""d2l_lite: the helper package of the executable GoogLeNet book.

The framework-neutral modules import no deep-learning framework: NumPy and the
standard library, matplotlib in plotting (when it draws) and tqdm in training's
progress bar (architecture, backend, textbook, counting, flop_rules, reference,
data, paper, training, variants, classic_nets, parallel, processes, plotting,
tables, runtime). One package per framework, with the same names in each
(``backend.PACKAGE_NAMES``, checked by the conformance suite)::

    from d2l_lite import torch as d2l        # or tensorflow, jax, mxnet
"""

__version__ = "0.1.0"
