"""Training curves in the style of He et al. 2015, Fig. 6: dashed train, solid test."""
from __future__ import annotations


def plot_history(history, path, title=""):
    """Error (%) and loss per epoch from ``Trainer.history`` rows, saved as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return None
    epochs = [row["epoch"] for row in history]
    fig, (ax_err, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    ax_err.plot(epochs, [100 * r["train_error"] for r in history], "--", color="C0", label="train")
    ax_err.plot(epochs, [100 * r["test_error"] for r in history], "-", color="C0", label="test")
    ax_err.set(xlabel="epoch", ylabel="error (%)", title="error")
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "--", color="C1", label="train")
    ax_loss.plot(epochs, [r["test_loss"] for r in history], "-", color="C1", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for ax in (ax_err, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
