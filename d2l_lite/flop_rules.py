"""Framework-neutral FLOP rules: what each framework's own counter reports,
computed from the spec alone.

PyTorch's ``FlopCounterMode`` and MXNet's hook counter report exactly
``2 x`` the analytic multiply-accumulates (:func:`d2l_lite.counting.analytic_flops`).
TensorFlow's profiler and XLA's cost analysis count more (bias additions,
pooling, ...); their rules, which need no framework code, live here and read
:func:`d2l_lite.architecture.walk`, the same walk as the counter.
"""

from __future__ import annotations

from typing import Dict

from .architecture import walk

