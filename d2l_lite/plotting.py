"""Figures shared by the chapters (matplotlib only, framework-neutral)."""

from __future__ import annotations

import itertools
import math
from typing import Optional, Sequence

import numpy as np

from .architecture import AvgPool, Conv, Dense, GlobalAvgPool, Inception, MaxPool
from .counting import count_network

#: One colour per kind of layer, used by every figure in the book.
COLORS = {"1x1": "#9ecae1", "3x3": "#fdae6b", "5x5": "#fd8d3c", "7x7": "#d94801",
          "inception": "#bcbddc", "pool": "#a1d99b", "dense": "#e0e0e0", "io": "#e0e0e0"}


def _label(layer, in_channels: int) -> str:
    if isinstance(layer, MaxPool):
        return f"{layer.kernel}x{layer.kernel} max pool\nstride {layer.stride}, pad {layer.padding}"
    return (f"{layer.kernel}x{layer.kernel} conv, {layer.out_channels}\n"
            f"({in_channels} -> {layer.out_channels} ch, pad {layer.padding})")


def draw_inception(block: Inception, in_channels: int, size: Optional[int] = None,
                   ax=None, title: Optional[str] = None):
    """Draw the four branches of ``block``, coloured by kernel size; return the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 5.2))
    width, height = 2.1, 0.75
    xs = [1.25 + 2.5 * i for i in range(4)]
    rows = {"in": 0.5, 0: 1.9, 1: 3.3, "out": 4.7}
    where = f" x {size}x{size}" if size else ""

    def box(x, y, text, color, w=width):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - height / 2), w, height,
                                    boxstyle="round,pad=0.02", fc=color, ec="#444444", lw=1))
        ax.text(x, y, text, ha="center", va="center", fontsize=9)

    def arrow(x0, y0, x1, y1):
        ax.add_patch(FancyArrowPatch((x0, y0 + height / 2), (x1, y1 - height / 2),
                                     arrowstyle="-|>", mutation_scale=10, color="#444444", lw=1))

    centre = (xs[0] + xs[-1]) / 2
    io_width = 3.2  # wide enough for the input's and the output's labels
    box(centre, rows["in"], f"input: {in_channels} channels{where}", COLORS["io"], io_width)
    box(centre, rows["out"], f"concatenate channels: {block.out_channels}{where}",
        COLORS["io"], io_width)
    for x, (branch, layers) in zip(xs, block.branches()):
        if len(layers) > 2:
            raise ValueError(f"draw_inception draws branches of one or two layers; "
                             f"{branch} of {block.name} has {len(layers)}")
        channels = in_channels
        previous = (centre, rows["in"])
        # One-layer branches sit on the upper row, so every branch ends level.
        levels = [1] if len(layers) == 1 else [0, 1]
        for layer, level in zip(layers, levels):
            kind = "pool" if isinstance(layer, MaxPool) else f"{layer.kernel}x{layer.kernel}"
            box(x, rows[level], _label(layer, channels), COLORS.get(kind, COLORS["io"]))
            if len(layers) == 1:  # round the lower row's boxes, not under them
                side = centre + (io_width / 2 if x > centre else -io_width / 2)
                ax.plot([side, x], [rows["in"]] * 2, color="#444444", lw=1)
                previous = (x, rows["in"] - height / 2)
            arrow(previous[0], previous[1], x, rows[level])
            previous = (x, rows[level])
            if isinstance(layer, Conv):
                channels = layer.out_channels
        arrow(previous[0], previous[1], centre, rows["out"])
    for i, x in enumerate(xs):  # at the box's outer corner, clear of the arrows
        left = x < centre
        ax.text(x - width / 2 if left else x + width / 2, rows[1] + height / 2 + 0.08,
                f"branch {i + 1}", ha="left" if left else "right", va="bottom",
                fontsize=8, color="#555555")
    ax.legend(handles=legend_handles(), loc="lower right", fontsize=8, frameon=False)
    ax.set(xlim=(0, 10), ylim=(0, 5.2))
    ax.axis("off")
    ax.set_title(title or f"{block.name}: four branches, concatenated", fontsize=11)
    return ax


def legend_handles(kinds: Sequence[str] = ("1x1", "3x3", "5x5", "pool")):
    """Legend patches for the layer colours."""
    from matplotlib.patches import Patch
    names = {"1x1": "1x1 convolution", "3x3": "3x3 convolution", "5x5": "5x5 convolution",
             "7x7": "7x7 convolution", "inception": "Inception block", "pool": "pooling",
             "dense": "dense layer", "io": "input / output"}
    return [Patch(fc=COLORS[k], ec="#444444", label=names[k]) for k in kinds]


def draw_googlenet(spec, input_size: Optional[int] = None, ax=None):
    """GoogLeNet as a column of layers with their output shapes (from the counter, so the
    picture matches the tables), bracketed by part."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.patches import FancyBboxPatch

    size = spec.input_size if input_size is None else input_size
    rows = [row for row in count_network(spec, size) if row.part != "aux"]  # the main path
    layers = [layer for stage in spec.stages for layer in stage.layers]
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.2))
    n, parts = len(rows), {}
    for i, (row, layer) in enumerate(zip(rows, layers)):
        if isinstance(layer, Inception):
            color, text = COLORS["inception"], f"{layer.name}  (Inception)"
        elif isinstance(layer, GlobalAvgPool):
            color, text = COLORS["pool"], f"{layer.name}  (global avg pool)"
        elif isinstance(layer, (MaxPool, AvgPool)):
            kind = "max" if isinstance(layer, MaxPool) else "avg"
            color = COLORS["pool"]
            text = f"{layer.name}  ({kind} pool {layer.kernel}x{layer.kernel}/{layer.stride})"
        elif isinstance(layer, Dense):
            color, text = COLORS["dense"], f"{layer.name}  (dense, {layer.out_features})"
        else:
            color = COLORS.get(f"{layer.kernel}x{layer.kernel}", COLORS["7x7"])
            text = (f"{layer.name}  (conv {layer.kernel}x{layer.kernel}/{layer.stride}, "
                    f"{layer.out_channels})")
        y = n - i
        ax.add_patch(FancyBboxPatch((0.5, y - 0.35), 4.2, 0.7, boxstyle="round,pad=0.02",
                                    fc=color, ec="#444444", lw=0.8))
        ax.text(0.65, y, text, va="center", fontsize=8.5)
        ax.text(4.9, y, " x ".join(map(str, row.out_shape)), va="center", fontsize=8.5,
                family="monospace")
        parts.setdefault(row.part, []).append(y)
    ax.text(0.5, n + 0.8, f"input: {spec.in_channels} x {size} x {size}", fontsize=9)
    ax.text(4.9, n + 0.8, "output C x H x W", fontsize=9, color="#555555")
    for part, ys in parts.items():
        top, bottom = max(ys) + 0.4, min(ys) - 0.4
        ax.plot([0.3, 0.2, 0.2, 0.3], [top, top, bottom, bottom], color="#333333", lw=1)
        ax.text(0.1, (top + bottom) / 2, part, rotation=90, ha="right", va="center", fontsize=10)
    kinds = [k for k in COLORS if k != "io" and any(p.get_facecolor()[:3] == to_rgb(COLORS[k])
                                                     for p in ax.patches)]
    ax.legend(handles=legend_handles(kinds), loc="upper center", bbox_to_anchor=(0.5, 0.0),
              ncol=3, fontsize=8, frameon=False)
    ax.set(xlim=(-0.4, 7), ylim=(0.3, n + 1.3))
    ax.axis("off")
    return ax


def per_class_accuracy(labels, predictions, num_classes: int = 10):
    """The fraction of each class's test images predicted right."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return np.array([np.mean(predictions[labels == k] == k) for k in range(num_classes)])


def plot_confusion(labels, predictions, class_names: Sequence[str], title: str = ""):
    """The confusion matrix as counts: row = true class, column = predicted class."""
    import matplotlib.pyplot as plt
    k = len(class_names)
    counts = np.zeros((k, k), int)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    ax.imshow(counts, cmap="Blues")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, n, ha="center", va="center", fontsize=7,
                    color="white" if n > counts.max() / 2 else "black")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted class", ylabel="true class")
    ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(class_names, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_predictions(images, labels, predictions, class_names: Sequence[str], n: int = 8,
                     per_row: int = 5):
    """The first ``n`` test images with their true and predicted labels (red: wrong),
    ``per_row`` to a row, so that the labels stay legible in the page's column."""
    import matplotlib.pyplot as plt
    rows = -(-n // per_row)
    fig, axes = plt.subplots(rows, per_row, figsize=(1.5 * per_row, 2.2 * rows),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, true, guess in zip(axes.flat, images[:n], labels, predictions):
        ax.imshow(image, cmap="gray_r")
        ax.set_title(f"{class_names[true]}\n{class_names[guess]}", fontsize=9,
                     color="black" if true == guess else "red")
    fig.suptitle("true (top) and predicted (bottom) labels", fontsize=10)
    fig.tight_layout()
    return fig


def show_branch_maps(image, maps, n: int = 6, title: str = ""):
    """One image and, per branch of an Inception block (``maps``: name -> channels x H x
    W, after the ReLU), its ``n`` most active channels, strongest first. Each map has its
    own grey scale (white: zero), so the pattern shows and the printed means compare."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(maps), n + 1, figsize=(1.2 * (n + 1), 1.3 * len(maps)),
                             squeeze=False)
    for row, (name, channels) in zip(axes, maps.items()):
        means = channels.mean(axis=(1, 2))
        row[0].imshow(image, cmap="gray_r")
        row[0].set_ylabel(name, fontsize=8)
        for ax, k in zip(row[1:], means.argsort()[::-1][:n]):
            ax.imshow(channels[k], cmap="gray_r", vmin=0)
            ax.set_title(f"ch {k}: {means[k]:.2f}", fontsize=7)
        for ax in row:
            ax.set(xticks=[], yticks=[])
    axes[0, 0].set_title("input", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class ProgressPlot:
    """Loss and accuracies redrawn in place after each epoch in a notebook (so the book
    keeps one figure); outside a notebook it does nothing."""
    def __init__(self, title: str, num_epochs: int, enabled: Optional[bool] = None):
        self.title = title
        self.num_epochs = num_epochs
        self.enabled = _in_notebook() if enabled is None else enabled
        self._handle = None

    def update(self, history) -> None:  # a training.History
        if not self.enabled or not history.epochs:
            return
        import io

        import matplotlib.pyplot as plt
        from IPython.display import Image, display
        fig = plot_history([history], title=self.title, num_epochs=self.num_epochs)
        # PNG bytes, not the figure: showing a figure needs a backend set up,
        # which differs between matplotlib versions (MXNet's is older).
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        image = Image(data=buffer.getvalue(), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)


def plot_history(histories, title: str = "", num_epochs: Optional[int] = None):
    """Loss and accuracies of runs against epochs, named by what tells them apart: the
    training metrics every quarter epoch (lines), test accuracy after each epoch (squares).
    Both axes start at zero and the loss of guessing, ln 10, is a dotted line, so that a
    plateau looks flat; the legends sit below the panels, where they hide no point."""
    import matplotlib.pyplot as plt
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 4))
    ax_loss.axhline(math.log(10), color="black", linewidth=1, linestyle=":", zorder=3,
                    label="guessing, ln 10")  # on top: a loss stuck there hides it
    frameworks = len({h.framework for h in histories}) > 1
    recipes = len({h.recipe.name for h in histories}) > 1
    for h in histories:
        at, loss, acc = zip(*h.points) if h.points else ([e.epoch for e in h.epochs],
                                                          h.metric("train_loss"),
                                                          h.metric("train_acc"))
        name = ", ".join([h.framework] * frameworks + [f"{h.recipe.name} recipe"] * recipes)
        line, = ax_loss.plot(at, loss, marker=".", label=name or "train loss")
        prefix = f"{name}: " if name else ""
        ax_acc.plot(at, acc, marker=".", linestyle="--", color=line.get_color(),
                    label=f"{prefix}train acc")
        ax_acc.plot([e.epoch for e in h.epochs], h.metric("test_acc"), marker="s",
                    markersize=7, color=line.get_color(), label=f"{prefix}test acc")
    last = num_epochs or max((len(h.epochs) for h in histories), default=1)
    for ax, name in ((ax_loss, "training loss (cross-entropy)"),
                     (ax_acc, "accuracy (fraction correct)")):
        ax.set(xlabel="epoch", xlim=(0, last + 0.1), xticks=range(0, last + 1))
        ax.set_ylabel(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, handlelength=4,  # long enough to show the dashes
                  loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    losses = [y for line in ax_loss.get_lines() for y in line.get_ydata()]
    ax_loss.set_ylim(0, 1.1 * max([math.log(10)] + [y for y in losses if math.isfinite(y)]))
    ax_acc.set_ylim(0, 1)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_comparison(histories, title: str = ""):
    """Test accuracy against epochs and against training seconds, one line per run
    (``histories``: name -> ``training.History``, the variants chapter's). Runs that
    end at the same accuracy would hide each other: each has its own marker and size
    (the first drawn largest) and its final accuracy in the legend. The accuracy axis
    spans the runs' accuracies, not 0 to 1, so that runs a few points apart can be told
    apart; it shows chance (0.1) as a dotted line where it reaches down to it."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    fig, (ax_epoch, ax_time) = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    markers = itertools.cycle("osD^vPX*")
    for k, (name, h) in enumerate(histories.items()):
        seconds = list(itertools.accumulate(h.metric("seconds")))
        style = dict(marker=next(markers), markersize=11 - k, alpha=0.8,
                     label=f"{name} ({h.final_test_acc:.3f})")
        ax_epoch.plot(h.metric("epoch"), h.metric("test_acc"), **style)
        ax_time.plot(seconds, h.metric("test_acc"), **style)
    ax_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_epoch.set(xlabel="epoch", ylabel="test accuracy")
    ax_time.set_xlabel("training seconds")
    accuracies = [a for h in histories.values() for a in h.metric("test_acc")]
    low = max(0.0, math.floor(20 * (min(accuracies) - 0.02)) / 20)
    high = min(1.0, math.ceil(20 * (max(accuracies) + 0.02)) / 20)
    ax_epoch.set_ylim(low, high)  # shared with ax_time
    for ax in (ax_epoch, ax_time):
        if low < 0.1:
            ax.axhline(0.1, color="grey", linewidth=0.8, linestyle=":")  # chance
        ax.grid(alpha=0.3)
    ax_time.legend(fontsize=8, title="run (final test acc)", title_fontsize=8,
                   loc="upper left", bbox_to_anchor=(1.02, 1))  # beside, not over
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
