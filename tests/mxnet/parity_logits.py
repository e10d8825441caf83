"""Run in the MXNet environment: read weights and inputs, write MXNet's logits.

    .venv-mxnet/bin/python tests/mxnet/parity_logits.py IN.npz OUT.npz

IN.npz holds ``spec`` ("book" or "paper"), ``X`` (NCHW float32) and the
canonical weights under their names; OUT.npz gets ``logits``. The parity test
in the main environment calls this, so all four frameworks see the very same
arrays.
"""

import sys

import numpy as np

from d2l_lite import architecture, backend


def main(source: str, target: str) -> None:
    arrays = dict(np.load(source))
    spec = {"book": architecture.BOOK, "paper": architecture.PAPER}[str(arrays.pop("spec"))]
    X = arrays.pop("X")
    mxnet = backend.get("mxnet")
    model = mxnet.load_weights(mxnet.build(spec), arrays)
    np.savez(target, logits=mxnet.logits(model, X))


if __name__ == "__main__":
    main(*sys.argv[1:3])
