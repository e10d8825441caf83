"""The textbook classes meet the description: which of a framework's classes
(``Inception``, ``NaiveInception``, ..., ``GoogLeNet``, ``GoogLeNetAux``,
``SmallStemGoogLeNet``, the same names in every framework) build a spec, and
the spec of a model built from them. By name, so that the copies of the classes
a page defines count as the textbook's."""

from typing import Tuple

from . import architecture
from .architecture import GoogLeNetSpec, MaxPool


def class_names(spec: GoogLeNetSpec) -> Tuple[str, str]:
    """The names of the textbook classes that build ``spec``, the same in every framework:
    its block (``NaiveInception``, ``FactorizedInception``, ``ResidualInception`` or
    ``Inception``) and its network (``GoogLeNetAux``, ``SmallStemGoogLeNet`` or
    ``GoogLeNet``); a ``ValueError`` for a combination that no class builds."""
    first = spec.part("body")[0].layers[0]
    changes = [name for name, on in (("naive", not first.reduce), ("factorised",
               first.factorize), ("residual", first.residual)) if on]
    small = not any(isinstance(layer, MaxPool) for layer in spec.stages[0].layers)
    if len(changes) > 1 or small and spec.aux_heads:
        both = " and ".join(changes if len(changes) > 1 else ["small stem", "aux heads"])
        raise ValueError(f"no textbook class builds a model that is {both} at once; "
                         f"choose one of them")
    block = {"naive": "NaiveInception", "factorised": "FactorizedInception",
             "residual": "ResidualInception"}.get(changes[0] if changes else "", "Inception")
    return block, ("GoogLeNetAux" if spec.aux_heads else
                   "SmallStemGoogLeNet" if small else "GoogLeNet")


_CLASS_OPTIONS = {"Inception": {}, "NaiveInception": {"reduce": False},
                  "FactorizedInception": {"factorize": True},
                  "ResidualInception": {"residual": True}, "GoogLeNet": {},
                  "GoogLeNetAux": {"aux_heads": True}, "SmallStemGoogLeNet": {"stem": "small"}}


def classes(spec: GoogLeNetSpec, book, conv_bias: bool = False) -> Tuple[type, type]:
    """The block and network classes of a framework's ``book`` module (the page's
    saved cells) that build ``spec``, picked by :func:`class_names`. ``conv_bias``:
    whether the book's Conv-BN-ReLU can keep a conv bias (PyTorch's only)."""
    if spec.stages[0].layers[0].conv_bias and not conv_bias:
        raise ValueError(f"{book.__name__}'s Conv-BN-ReLU has no conv bias: a spec with "
                         f"conv_bias=True (architecture.TUTORIAL_V1) is PyTorch's only")
    block, net = class_names(spec)
    return getattr(book, block), getattr(book, net)


def spec(block: type, net: type, **options) -> GoogLeNetSpec:
    """The inverse of :func:`class_names`: the spec of a model built from classes
    ``block`` and ``net``, known by name so that a page's own copies of the classes
    count; ``options`` go to :func:`architecture.googlenet_spec` (sizes, ``batch_norm``...).
    The input size a model cannot tell is its stem's and head's: 28 for the small
    stem, 224 for the paper's 7x7 pool, else the book's 96."""
    names = [next((c.__name__ for c in cls.__mro__ if c.__name__ in _CLASS_OPTIONS), None)
             for cls in (block, net)]
    if None in names:
        raise ValueError(f"{block.__name__} in {net.__name__}: not a textbook class "
                         f"({', '.join(_CLASS_OPTIONS)}), so no spec names its tensors")
    block_options, net_options = (_CLASS_OPTIONS[name] for name in names)
    options.setdefault("input_size", 28 if net_options.get("stem") == "small" else
                       224 if options.get("head_pool") == "avg7" else 96)
    return architecture.googlenet_spec(**block_options, **net_options, **options)
