"""PNG figures of the benchmark results (matplotlib, Agg); each states its setup and command."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

MODE_COLORS = {
    "fp32": "#4c72b0",
    "bf16-autocast": "#8172b3",
    "quaff": "#dd8452",
    "quaff-fp32": "#dd8452",
    "quaff-bf16": "#c44e52",
    "w8a8": "#55a868",
    "w8a8-bf16": "#55a868",
}


def _footer(fig: Figure, lines: list[str]) -> None:
    """Setup facts and the producing command, small, under the axes."""
    width = int(fig.get_figwidth() * 13)  # characters of 7 pt monospace per line
    wrapped = [w for line in lines for w in textwrap.wrap(line, width) or [""]]
    fig.text(0.01, 0.01, "\n".join(wrapped), fontsize=7, va="bottom", ha="left", family="monospace")
    fig.subplots_adjust(bottom=0.12 + 0.028 * len(wrapped), hspace=0.55)


def _save(fig: Figure, path: Path) -> Path:
    """Write the PNG and close the figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def speed_figure(shape: str, data: dict[str, Any], env: dict[str, Any], path: Path) -> Path:
    """Median step time and net peak memory per mode, one column per model, for one shape."""
    models = [k for k, v in data.items() if isinstance(v, dict) and k not in ("config",)]
    cfg = data.get("config", {})
    fig, axes = plt.subplots(2, len(models), figsize=(5.2 * len(models), 7.5), squeeze=False)
    for col, model in enumerate(models):
        modes = list(data[model])
        colors = [MODE_COLORS.get(m, "grey") for m in modes]
        times = [data[model][m]["median_step_s"] for m in modes]
        mem = [data[model][m].get("net_peak_mib") or 0.0 for m in modes]
        for row, (values, unit) in enumerate(((times, "s"), (mem, "MiB"))):
            ax = axes[row][col]
            bars = ax.bar(range(len(modes)), values, color=colors)
            ax.set_ylim(0, max(values) * 1.15 if values and max(values) > 0 else 1)
            ax.set_xticks(range(len(modes)), modes, rotation=20, ha="right", fontsize=8)
            for bar, m in zip(bars, modes, strict=True):
                ratio = data[model][m].get("speedup_vs_fp32" if row == 0 else "net_peak_vs_fp32")
                label = f"{ratio:.2f}x" if ratio is not None else ""
                ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8)  # fmt: skip
            what = (
                "median step time (label: speed-up vs fp32)"
                if row == 0
                else ("net peak RSS (label: vs fp32)")
            )
            ax.set_title(f"{model}: {what}", fontsize=9)
            ax.set_ylabel(unit)
    fig.suptitle(f"LoRA training step, batch x seq = {shape.replace('x', ' x ')}")
    _footer(
        fig,
        [
            f"models: {', '.join(models)} (synthetic llama: {cfg.get('layers', '?')} layers); "
            f"batch {cfg.get('batch', '?')}, seq len {cfg.get('seq_len', '?')}, "
            f"threads {cfg.get('threads', env.get('threads'))}, device {env.get('device')}, "
            f"torch {env.get('torch')}",
            f"$ {data.get('command', '?')}",
        ],
    )
    return _save(fig, path)


def loss_figure(quality: dict[str, Any], path: Path) -> Path:
    """Validation loss (markers) and training loss (faint) per step for every mode."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for mode, info in quality["modes"].items():
        color = MODE_COLORS.get(mode, "grey")
        train = info.get("train_curve", [])
        ax.plot([r["step"] for r in train], [r["train_loss"] for r in train], color=color,
                alpha=0.25, linewidth=0.8)  # fmt: skip
        valid = info.get("valid_curve", [])
        ax.plot([r["step"] for r in valid], [r["valid_loss"] for r in valid], color=color,
                marker="o", label=f"{mode} validation (train faint)")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy on answer tokens (log scale)")
    ax.legend()
    cfg = quality.get("config", {})
    env = quality.get("environment", {})
    ax.set_title(f"Fine-tuning {cfg.get('model')} on the date task: loss curves", fontsize=10)
    _footer(
        fig,
        [
            f"model {cfg.get('model')}; batch {cfg.get('batch')}, max seq len "
            f"{cfg.get('max_seq_len')}, {cfg.get('steps')} steps, lr {cfg.get('lr')}, seed "
            f"{cfg.get('seed')}; threads {env.get('threads')}, device {env.get('device')}",
            f"$ {quality.get('command', '?')}",
        ],
    )
    return _save(fig, path)


def tracked_layers(quality: dict[str, Any]) -> list[str]:
    """Layers that had outlier channels in the initial map (recall of the others is trivially 1)."""
    quaff = quality["modes"]["quaff"]
    initial = quaff.get("initial_map", {}).get("layers")
    if initial is not None:
        return sorted(name for name, channels in initial.items() if channels)
    points = quaff["stability"]["points"]
    return sorted(points[0]["per_layer"]) if points else []


def recall_figure(quality: dict[str, Any], path: Path) -> Path:
    """Overall and per-layer recall of the initial outlier map over the Quaff fine-tune."""
    stab = quality["modes"]["quaff"]["stability"]
    points = stab["points"]
    steps = [p["step"] for p in points]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    layers = tracked_layers(quality)
    for i, name in enumerate(layers):
        label = "per layer (with outliers)" if i == 0 else None
        values = [p["per_layer"].get(name, float("nan")) for p in points]
        ax.plot(steps, values, color="grey", alpha=0.2, linewidth=0.7, label=label)
    ax.plot(steps, [p["overall"] for p in points], color=MODE_COLORS["quaff"], marker="o",
            linewidth=2, label="overall (pooled over channels)")  # fmt: skip
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("optimizer step (0 = after int8 conversion, before any update)")
    ax.set_ylabel("recall of the initial outlier channels")
    ax.legend(loc="lower left")
    cfg = quality.get("config", {})
    env = quality.get("environment", {})
    ax.set_title(
        f"Outlier-channel stability during the Quaff fine-tune of {cfg.get('model')} "
        f"({stab['initial_channels']} channels)",
        fontsize=10,
    )
    _footer(
        fig,
        [
            f"model {cfg.get('model')}; re-measured every {stab['every']} steps on "
            f"{stab['calibration_examples']} training examples; batch {cfg.get('batch')}, "
            f"max seq len {cfg.get('max_seq_len')}; threads {env.get('threads')}, "
            f"device {env.get('device')}",
            f"$ {quality.get('command', '?')}",
        ],
    )
    return _save(fig, path)
