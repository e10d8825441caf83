"""Run in the MXNet environment: read weights and inputs, write MXNet's logits.

    .venv-mxnet/bin/python tests/mxnet/parity_logits.py IN.npz OUT.npz

IN.npz holds ``spec`` ("book" or "paper"), ``X`` (NCHW float32) and the
canonical weights under their names; OUT.npz gets ``logits``. The parity test
in the main environment calls this, so all four frameworks see the very same
arrays.
"""

import sys

import numpy as np

from d2l_lite import architecture
from d2l_lite import mxnet as d2l


def main(source: str, target: str) -> None:
    arrays = dict(np.load(source))
    spec = {"book": architecture.BOOK, "paper": architecture.PAPER}[str(arrays.pop("spec"))]
    X = arrays.pop("X")
    model = d2l.load_weights(d2l.googlenet(spec), arrays)
    np.savez(target, logits=d2l.logits(model, X))


if __name__ == "__main__":
    main(*sys.argv[1:3])
