"""d2l_lite: the small helper package of the executable GoogLeNet book.

Framework-neutral modules (import freely, they need only NumPy):

* :mod:`d2l_lite.architecture`: the one description of GoogLeNet;
* :mod:`d2l_lite.counting`: analytic parameter and MAC counts;
* :mod:`d2l_lite.reference`: canonical weights and a NumPy forward pass;
* :mod:`d2l_lite.data`: Fashion-MNIST loading and validation;
* :mod:`d2l_lite.paper`: the paper's Table 1 and torchvision's count, as data;
* :mod:`d2l_lite.training`: recipes, run scales, the history, the live plot;
* :mod:`d2l_lite.variants`: the variants chapter's six-run comparison;
* :mod:`d2l_lite.classic_nets`: AlexNet, VGG-11 and NiN for the counter;
* :mod:`d2l_lite.plotting`, :mod:`d2l_lite.tables`: figures and text tables;
* :mod:`d2l_lite.runtime`: small-scale mode, device notices, the hardware in words.

One module per framework, with the same names in each, imported the d2l way::

    from d2l_lite import torch as d2l        # or tensorflow, jax, mxnet
"""

__version__ = "0.1.0"
