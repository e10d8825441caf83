"""FLOPs and timing in JAX: XLA's cost analysis, the multiply-adds in a
forward pass's jaxpr, and the median time of a jitted forward pass."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .. import runtime
from ..flop_rules import conv_taps, xla_flop_terms  # noqa: F401 (the FLOPs page's)
from ..flop_rules import xla_flops as expected_flops  # noqa: F401
from ..flop_rules import xla_flops_by_op as expected_flops_by_op  # noqa: F401
from .model import init, variable_shapes


def count_flops(model_or_block, input_shape, *, device=None) -> int:
    """XLA's FLOPs (:func:`xla_flop_terms`) of a forward pass, compiled from shapes only."""
    runtime.check_batch_shape(input_shape, channels_last=True)
    with jax.default_device(device or jax.devices("cpu")[0]):
        x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
        variables = variable_shapes(model_or_block, input_shape)
        cost = jax.jit(model_or_block.apply).lower(variables, x).compile().cost_analysis()
    return int((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])


def matmul_flops(model_or_block, input_shape) -> int:
    """2 x the multiply-adds of the convolutions and matrix products in a forward
    pass's jaxpr, padding taps included: what PyTorch's and MXNet's counters
    report, :func:`counting.analytic_flops` (XLA also counts biases, ReLUs, pools)."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    variables = variable_shapes(model_or_block, input_shape)
    jaxpr = jax.make_jaxpr(model_or_block.apply)(variables, x)
    return 2 * _macs(jaxpr.jaxpr)


def _macs(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        out = math.prod(eqn.outvars[0].aval.shape)
        if eqn.primitive.name == "conv_general_dilated":  # out x (in x kernel taps)
            kernel = eqn.invars[1].aval.shape
            out_axis = eqn.params["dimension_numbers"].rhs_spec[0]
            total += out * math.prod(kernel) // kernel[out_axis]
        elif eqn.primitive.name == "dot_general":  # out x the contracted size
            (contracted, _), _ = eqn.params["dimension_numbers"]
            total += out * math.prod(eqn.invars[0].aval.shape[d] for d in contracted)
        for sub in eqn.params.values():  # the jaxprs of nested jit calls
            sub = getattr(sub, "jaxpr", sub)
            total += _macs(sub) if hasattr(sub, "eqns") else 0
    return total


def time_forward(model_or_block, input_shape, repeats=10, warmup=2, variables=None):
    """Median seconds of a jitted forward pass, awaited, after ``warmup`` (the first compiles)."""
    variables = variables or init(model_or_block, input_shape)
    forward = jax.jit(model_or_block.apply)
    X = jax.random.uniform(jax.random.key(0), tuple(input_shape))
    return runtime.median_seconds(lambda: forward(variables, X).block_until_ready(),
                                   repeats, warmup)
