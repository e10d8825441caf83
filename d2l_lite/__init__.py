"""d2l_lite: the helper package of the executable GoogLeNet book.

The framework-neutral modules need only NumPy (architecture, counting,
reference, data, paper, training, variants, classic_nets, plotting, tables,
runtime, flop_rules). One module per framework, with the same names in each::

    from d2l_lite import torch as d2l        # or tensorflow, jax, mxnet
"""

__version__ = "0.1.0"
