"""The pictures of learning: a stage II run's loss, PSNR and each learned parameter per iteration
with the kept iterate marked (`cgwm learn` writes it as learning.png), and PSNR curves side by side
(`cgwm eval`'s psnr_curves.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

UNITS = {"mass": "kg", "mu": "", "stiffness": "1/s^2 or N/m", "damping": "1/s or N s/m"}
STAGES = {"identify": "identify (tracks)", "refine": "refine (images)"}  # row titles of a free object's stages


def kept_record(history: list[dict], info: dict) -> int:
    """The index in `history` of the iterate a stage II run kept, from its bundle's `info`: a free
    object's kept candidate (info["kept"]: "initial" is identification's first record, "identified"
    its last, "refined" the refinement's info["refined_iteration"]), else info["best_iteration"]."""
    def index(stage, iteration=None):
        found = [i for i, h in enumerate(history) if h.get("stage") == stage
                 and (iteration is None or h.get("iteration") == iteration)]
        if not found:
            raise ValueError(f"history: no record of {stage or 'learning'}"
                             f"{'' if iteration is None else f' iteration {iteration}'} for the kept iterate")
        return found
    kept = info.get("kept")
    if kept is None:
        return index(None, info["best_iteration"])[0]
    if kept not in ("initial", "identified", "refined"):
        raise ValueError(f"info: expected kept to be initial, identified or refined, got {kept!r}")
    if kept == "refined":
        return index("refine", info["refined_iteration"])[0]
    return index("identify")[0 if kept == "initial" else -1]


def learning_figure(history: list[dict], kept: int, parameters=None, title: str = ""):
    """A matplotlib Figure of a stage II run, one row per stage (records' "stage": a free object's
    identify then refine; one row where records have none). A row's panels, against the iteration:
    the loss (log scale where it spans a decade), the training PSNR (dB) where its records have
    one, and each parameter of `parameters` (default every one of UNITS in the records) that they
    have; the held-out loss and PSNR as dots where scored. The kept iterate `kept` (an index of history) is a dashed line and a
    dot on each panel of its row. history: learn_log.jsonl's records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not history or not all(isinstance(h, dict) and "loss" in h for h in history):
        raise ValueError("history: expected learn_log.jsonl's records, each with a loss")
    if isinstance(kept, bool) or not isinstance(kept, int) or not 0 <= kept < len(history):
        raise ValueError(f"kept: expected an index of history in [0, {len(history)}), got {kept!r}")
    stages = list(dict.fromkeys(h.get("stage") for h in history))
    rows = {s: [i for i, h in enumerate(history) if h.get("stage") == s] for s in stages}
    if parameters is None:
        parameters = [p for p in UNITS if any(p in h for h in history)]
    missing = [p for p in parameters if not any(p in history[r[0]] for r in rows.values())]
    if missing:
        raise ValueError(f"parameters: {missing} are not in history's records (they have {sorted(history[0])})")
    panels = {s: ["loss", *(["psnr"] if all("psnr" in history[i] for i in r) else []),
                  *(p for p in parameters if p in history[r[0]])] for s, r in rows.items()}
    columns = max(len(names) for names in panels.values())
    fig, axes = plt.subplots(len(stages), columns, figsize=(3.2 * columns, 2.9 * len(stages)), dpi=110,
                             squeeze=False)
    for row, stage in enumerate(stages):
        records = [history[i] for i in rows[stage]]
        iterations = np.array([h.get("iteration", k) for k, h in enumerate(records)])
        here = rows[stage].index(kept) if kept in rows[stage] else None
        for ax, name in zip(axes[row], panels[stage]):
            values = np.array([h[name] for h in records], dtype=float)
            held = [(it, h[f"held_out_{name}"]) for it, h in zip(iterations, records) if f"held_out_{name}" in h]
            ax.plot(iterations, values, color="tab:blue", label="training" if held else None)
            if held:
                ax.plot(*zip(*held), "s", color="tab:green", markersize=4, label="held out")
            if here is not None:
                ax.axvline(iterations[here], color="tab:red", linestyle="--", linewidth=1)
                ax.plot([iterations[here]], [values[here]], "o", color="tab:red",
                        label=f"kept: iteration {iterations[here]}")
            if name == "loss" and (values > 0).all() and values.max() > 10.0 * values.min():
                ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            unit = {"psnr": "dB"}.get(name, UNITS.get(name, ""))
            heading = "training PSNR" if name == "psnr" else name
            ax.set(title=heading if stage is None else f"{STAGES.get(stage, stage)}: {heading}",
                   xlabel="iteration", ylabel=f"{name}{f' ({unit})' if unit else ''}")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0] and (name == "loss" or held):
                ax.legend(loc="best", fontsize=7)
        for ax in axes[row][len(panels[stage]):]:
            fig.delaxes(ax)
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


def plot_curves(curves: dict, path, title: str) -> None:
    """Write a PNG of PSNR (dB) against iteration, one line per entry of `curves` {name: [dB]}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for name, values in curves.items():
        ax.plot(np.arange(len(values)), values, label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training PSNR, dB")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
