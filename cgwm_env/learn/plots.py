"""The picture of a stage II run: its loss, its PSNR and each learned parameter per iteration, the
iterate it kept marked, drawn from the run's learn_log.jsonl (docs/cli.md says which verbs draw it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

UNITS = {"mass": "kg", "mu": "", "stiffness": "1/s^2 or N/m", "damping": "1/s or N s/m"}
NOT_PARAMETERS = ("iteration", "loss", "psnr", "seconds")


def learning_figure(history: list[dict], kept: int, parameters=None, title: str = ""):
    """A matplotlib Figure with one panel each for the loss, the training PSNR (dB) and every
    learned parameter (`parameters`, names of history's numeric fields; default all but
    NOT_PARAMETERS) against the iteration; the kept iterate `kept` (an index of history) is a
    dashed line and a dot on every panel. history: learn_log.jsonl's records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history or not all(isinstance(h, dict) and "loss" in h and "psnr" in h for h in history):
        raise ValueError("history: expected learn_log.jsonl's records, each with loss and psnr")
    if isinstance(kept, bool) or not isinstance(kept, int) or not 0 <= kept < len(history):
        raise ValueError(f"kept: expected an index of history in [0, {len(history)}), got {kept!r}")
    if parameters is None:
        parameters = [k for k, v in history[0].items() if k not in NOT_PARAMETERS and isinstance(v, (int, float))]
    missing = [p for p in parameters if p not in history[0]]
    if missing:
        raise ValueError(f"parameters: {missing} are not in history's records (it has {sorted(history[0])})")
    names = ["loss", "psnr", *parameters]
    iterations = np.array([h.get("iteration", i) for i, h in enumerate(history)])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), dpi=110, squeeze=False)
    for ax, name in zip(axes[0], names):
        values = np.array([h[name] for h in history], dtype=float)
        ax.plot(iterations, values, color="tab:blue")
        ax.axvline(iterations[kept], color="tab:red", linestyle="--", linewidth=1)
        ax.plot([iterations[kept]], [values[kept]], "o", color="tab:red", label=f"kept: iteration {iterations[kept]}")
        unit = {"psnr": "dB", "loss": ""}.get(name, UNITS.get(name, ""))
        ax.set(title=name if name != "psnr" else "training PSNR", xlabel="iteration",
               ylabel=f"{name}{f' ({unit})' if unit else ''}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_learning(history: list[dict], path, kept: int, parameters=None, title: str = "") -> Path:
    """Write learning_figure's picture to `path` (PNG); returns the path."""
    import matplotlib.pyplot as plt

    fig = learning_figure(history, kept, parameters, title)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
