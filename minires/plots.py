"""Training curves in the style of He et al. 2015, Fig. 6: dashed train, solid test."""
from __future__ import annotations

MARKERS_UP_TO = 40            # epochs: beyond this the markers would hide the lines


def history_figure(history, title=""):
    """A matplotlib Figure: error (%) and loss per epoch from ``Trainer.history`` rows.

    Every epoch gets a marker on short runs (a one-epoch run is a visible point, not an
    empty axis) and the epoch axis has whole-number ticks only."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    marker = "o" if len(epochs) <= MARKERS_UP_TO else None
    fig, (ax_err, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, scale, color, ylabel, name in (
            (ax_err, "error", 100, "C0", "error (%)", "error"),
            (ax_loss, "loss", 1, "C1", "cross-entropy", "loss")):
        ax.plot(epochs, [scale * r[f"train_{key}"] for r in history], "--", marker=marker,
                color=color, label="train")
        ax.plot(epochs, [scale * r[f"test_{key}"] for r in history], "-", marker=marker,
                color=color, label="test")
        ax.set(xlabel="epoch", ylabel=ylabel, title=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:                   # one point, centred, its epoch the only tick
            ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
            ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history, path, title=""):
    """Save ``history_figure(history, title)`` as a PNG at ``path``; None for no history."""
    if not history:
        return None
    import matplotlib.pyplot as plt
    fig = history_figure(history, title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
