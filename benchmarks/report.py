"""Markdown tables and PNG plots from the benchmark JSON files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _mean_shots(rows: list[dict], key: str) -> dict[str, tuple[float, float]]:
    """Mean (and sd over training seeds) held-out accuracy per shot count."""
    shots = rows[0][key]["shots"]
    out = {}
    for m in shots:
        values = [r[key]["shots"][m]["accuracy"] for r in rows]
        out[m] = (float(np.mean(values)), float(np.std(values)) if len(values) > 1 else 0.0)
    return out


def personalization_report(path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(Path(path).read_text())
    lines = ["# Personalisation: held-out users adapted from m of their own choices", "",
             f"Command: `{results['command']}` (total {results.get('total_seconds', 0) / 60:.0f} min, 2-core CPU). "
             "Accuracy on each held-out user's remaining pairs, averaged per user over 5 seeded draws, then over "
             "users; int8 ONNX artifacts through the runtime. `map` = the population prior (empirical Bayes), "
             "`l2` = the paper's plain L2 adapter. TL;DR rows average 3 training seeds (± = sd over seeds). "
             "`best epoch` 0 means that no training epoch beat the warm start (the fitted population reward "
             "as feature 0) on the raters' validation pairs, so the RFM is the population model plus untrained "
             "features. `(fp32)`: the int8 export missed a validation bound, so the fp32 graph was evaluated.",
             ""]
    for dataset, entry in results["datasets"].items():
        split = entry.get("split") or {}
        lines += [f"## {dataset}", "", f"{split.get('train_users', '?')} training raters, "
                  f"{split.get('heldout_users', '?')} held-out users.", ""]
        shots = list(next(iter(entry["methods"].values()))[0]["heldout_map"]["shots"])
        lines += ["| method | adapter | best epoch | seen acc | " + " | ".join(f"m={m}" for m in shots) + " |",
                  "|---|---|---|---:|" + "---:|" * len(shots)]
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for name, rows in entry["methods"].items():
            seen = np.mean([r["seen"]["accuracy"] for r in rows])
            for adapter in ("map", "l2"):
                if name == "baseline-bt" and adapter == "l2":
                    continue
                acc = _mean_shots(rows, f"heldout_{adapter}")
                cells = " | ".join(f"{acc[m][0]:.3f}" + (f" ± {acc[m][1]:.3f}" if acc[m][1] else "") for m in shots)
                epochs = ",".join(str(r["best_epoch"]) for r in rows)
                precision = "" if all(r["precision"] == "int8" for r in rows) else " (fp32)"
                lines.append(f"| {name}{precision} | {adapter if name != 'baseline-bt' else 'none'} | {epochs} | "
                             f"{seen:.3f} | {cells} |")
                if adapter == "map" or name.startswith("rfm-d32"):
                    xs = [int(m) for m in shots]
                    ax.plot(xs, [acc[m][0] for m in shots], marker="o",
                            ls="-" if adapter == "map" else ":", label=f"{name} ({adapter})")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("choices used to adapt (m)")
        ax.set_ylabel("held-out accuracy")
        ax.set_title(f"{dataset}: held-out users")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"personalization_{dataset}.png", dpi=110)
        plt.close(fig)
        lines.append("")
        bon = {name: rows[0]["best_of_n"] for name, rows in entry["methods"].items() if "best_of_n" in rows[0]}
        if bon:
            ns = list(next(iter(bon.values())))
            lines += ["Best-of-n (m = 20, normalised true reward: random pick 0, oracle 1):", "",
                      "| method | " + " | ".join(f"n={n}" for n in ns) + " |", "|---|" + "---:|" * len(ns)]
            lines += [f"| {name} | " + " | ".join(f"{v[n]['normalised_reward']:.3f}" for n in ns) + " |"
                      for name, v in bon.items()]
            lines.append("")
        d32 = entry["methods"].get("rfm-d32", [])
        if d32 and "fp32" in d32[0]:
            diffs = {m: np.mean([r["heldout_map"]["shots"][m]["accuracy"] - r["fp32"]["heldout_map"]["shots"][m]
                                 ["accuracy"] for r in d32]) for m in shots}
            lines += ["int8 minus fp32 held-out accuracy (rfm-d32, map): " +
                      ", ".join(f"m={m}: {100 * v:+.2f} pts" for m, v in diffs.items()), ""]
    (out / "personalization.md").write_text("\n".join(lines) + "\n")


def training_report(path: Path, out: Path) -> None:
    results = json.loads(Path(path).read_text())
    lines = ["# Training time and accuracy", "", f"Command: `{results['command']}`", "",
             "| dataset | tune | cache | pairs | seconds | s per 1,000 pairs | train acc | val acc |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in results["runs"]:
        lines.append(f"| {r['dataset']} | {r['tune']} | {r['cache']} | {r['pairs']} | {r['seconds']:.1f} | "
                     f"{r['s_per_1000_pairs']:.1f} | {r['train_acc']:.3f} | {r['val_acc']:.3f} |")
    (out / "training.md").write_text("\n".join(lines) + "\n")
