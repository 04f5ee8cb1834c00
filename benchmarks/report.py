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


DESCRIPTION = (
    "Held-out users adapted from m of their own choices (MAP under the population prior), int8 ONNX "
    "artifacts through the runtime. **New responses** (the headline): accuracy on the user's pairs that share "
    "no response with the m adaptation pairs, averaged per user over 3 seeded draws, then over users; the "
    "same users at every m. **Shared responses**: the same users and draws, test pairs may re-use judged "
    "responses (memorising judged items; not what a reranker meets). Each row averages the training seeds "
    "(± = sd over seeds; the probe is trained once). `one-size` = the non-adaptive Bradley-Terry model; "
    "`linear-probe` = per-user logistic regression on the frozen encoder's sentence embedding. `best epoch` "
    "0 = the warm start (the fitted one-size reward) won the few-shot selection. `(fp32)`: the int8 export "
    "missed a validation bound, so the fp32 graph was evaluated.")


def paired_differences(rows: list[dict], baseline: list[dict], n_boot: int = 2000) -> dict[str, dict] | None:
    """A method minus the baseline, per shot count, paired over the same users (new responses): each user's
    accuracy averaged over the training seeds, the difference averaged over users, with a bootstrap 95% CI
    over users. None when the rows carry no per-user accuracies (older results)."""
    from rfm.evaluation import paired_difference

    shots = rows[0]["new_responses"]["shots"]
    if any("by_user" not in r["new_responses"]["shots"][m] for r in rows + baseline for m in shots):
        return None

    def per_user(runs: list[dict], m: str) -> dict[str, float]:
        users = set.intersection(*(set(r["new_responses"]["shots"][m]["by_user"]) for r in runs))
        return {u: float(np.mean([r["new_responses"]["shots"][m]["by_user"][u] for r in runs])) for u in users}

    return {m: paired_difference(per_user(rows, m), per_user(baseline, m), n_boot=n_boot) for m in shots}


def _diff_cells(diffs: dict[str, dict]) -> str:
    return "; ".join(f"m={m} {100 * d['diff']:+.1f} [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"
                     for m, d in diffs.items())


def paired_lines(entry: dict) -> list[str]:
    baseline = entry["methods"].get("one-size")
    if not baseline:
        return []
    lines, default = [], entry["methods"].get("rfm")
    for name, rows in entry["methods"].items():
        if name == "one-size" or rows[0].get("precision") == "exact":
            continue
        diffs = paired_differences(rows, baseline)
        if diffs:
            lines.append(f"- {name} minus one-size: " + _diff_cells(diffs))
        if name.startswith("rfm-") and default and (diffs := paired_differences(rows, default)):
            lines.append(f"- {name} minus rfm (the default recipe): " + _diff_cells(diffs))
        if name.startswith("one-size-") and default and (diffs := paired_differences(default, rows)):
            lines.append(f"- rfm minus {name} (a one-size variant as the baseline): " + _diff_cells(diffs))
        twin = entry["methods"].get("one-size-" + name.removeprefix("rfm-"))
        if name.startswith("rfm-") and twin and (diffs := paired_differences(rows, twin)):
            lines.append(f"- {name} minus one-size-{name.removeprefix('rfm-')} (both trained the same way): "
                         + _diff_cells(diffs))
    if not lines:
        return []
    return ["Paired over the same users (new responses, points; each user's accuracy averaged over the training "
            "seeds, 95% bootstrap CI over users):", "", *lines, ""]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    return ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1),
            *("| " + " | ".join(row) + " |" for row in rows)]


def host(machine: dict, threads: int) -> str:
    """How a results file names the machine it ran on."""
    return (f"{machine.get('cpu')} ({machine.get('cores')} cores), onnxruntime {machine.get('onnxruntime')}, "
            f"{threads} threads")


def write_results(out: Path, stem: str, result: dict, lines: list[str]) -> None:
    """`<stem>.json` (the measurements) and `<stem>.md` (the report) under `out`, which is created."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (out / f"{stem}.md").write_text("\n".join(lines))


def accuracy_table(entry: dict, key: str) -> list[str]:
    shots = [str(m) for m in entry["shots"]]
    lines = ["| method | best epoch | prior width | seen acc | " + " | ".join(f"m={m}" for m in shots) + " |",
             "|---|---|---|---:|" + "---:|" * len(shots)]
    for name, rows in entry["methods"].items():
        acc = _mean_shots(rows, key)
        cells = " | ".join(f"{acc[m][0]:.3f}" + (f" ± {acc[m][1]:.3f}" if acc[m][1] else "") for m in shots)
        epochs = ",".join(str(r["best_epoch"]) for r in rows)
        widths = ",".join("-" if r.get("prior_width") is None else f"{r['prior_width']:g}"
                          + (f" (cov x{r['prior_cov_scale']:g})" if r.get("prior_cov_scale", 1.0) not in (1.0, None) else "")
                          for r in rows)
        seen = np.mean([r["seen"]["accuracy"] for r in rows])
        precision = "" if all(r["precision"] in ("int8", "exact") for r in rows) else " (fp32)"
        if all("weight_decay_chosen" in r for r in rows):
            precision += " (decay " + ",".join(f"{r['weight_decay_chosen']:g}" for r in rows) + ")"
        lines.append(f"| {name}{precision} | {epochs} | {widths} | {seen:.3f} | {cells} |")
    return lines


def _kept_rows(labels: dict[str, str]) -> str:
    """'a, b (`command`); c (`other command`)': the kept rows grouped by the run that measured them."""
    by_run: dict[str, list[str]] = {}
    for name, run in labels.items():
        by_run.setdefault(run, []).append(name)
    return "; ".join(f"{', '.join(names)} (`{run}`)" for run, names in by_run.items())


def personalization_report(path: Path, out: Path) -> None:
    from rfm.plots import Curve, plot_accuracy

    results = json.loads(Path(path).read_text())
    lines = ["# Personalisation: held-out users adapted from m of their own choices", "",
             f"Latest run: `{results['command']}`"
             + (f" (total {results['total_seconds'] / 60:.0f} min, 2-core CPU)." if results.get("total_seconds") else ".")
             + " Datasets and rows it did not measure are kept from earlier runs: each section's \"Measured by\""
             " and \"Rows kept\" lines name the command behind its rows.",
             "", DESCRIPTION, ""]
    for dataset, entry in results["datasets"].items():
        split = entry.get("split") or {}
        first = next(iter(entry["methods"].values()))[0]["new_responses"]
        lines += [f"## {dataset}", "", *([f"Measured by `{entry['measured_by']}`.", ""] if entry.get("measured_by") else []),
                  *([f"Ceiling rows recomputed by `{entry['ceilings_measured_by']}`.", ""]
                    if entry.get("ceilings_measured_by") else []),
                  *([f"Rows kept from an earlier run: {_kept_rows(entry['kept_rows'])}.", ""]
                    if entry.get("kept_rows") else []),
                  f"{split.get('train_users', '?')} training raters, "
                  f"{split.get('heldout_users', '?')} held-out users; {first['users']} of them at every m "
                  f"({first['excluded_users']} left out: too few pairs for the largest m with a new-response "
                  "test pair).", "", "New responses (headline):", ""]
        lines += accuracy_table(entry, "new_responses")
        lines += ["", *paired_lines(entry)]
        lines += ["Shared responses (may re-use judged responses; beside the headline, not instead of it):", ""]
        lines += accuracy_table(entry, "shared_responses")
        lines.append("")
        curves = []
        for name, rows in entry["methods"].items():
            for key, style in (("new_responses", "-"), ("shared_responses", ":")):
                acc = _mean_shots(rows, key)
                curves.append(Curve(f"{name} ({key.replace('_', ' ')})", [int(m) for m in acc],
                                    [v[0] for v in acc.values()], style=style))
        plot_accuracy(curves, out / f"personalization_{dataset}.png", f"{dataset}: held-out users", size=(6.5, 4),
                      dpi=110, legend_size=7)
        bon = {name: rows[0]["best_of_n"] for name, rows in entry["methods"].items() if "best_of_n" in rows[0]}
        if bon:
            ns = list(next(iter(bon.values())))
            lines += ["Best-of-n (seed-0 models, m = 20, normalised true reward: random pick 0, oracle 1):", "",
                      "| method | " + " | ".join(f"n={n}" for n in ns) + " |", "|---|" + "---:|" * len(ns)]
            lines += [f"| {name} | " + " | ".join(f"{v[n]['normalised_reward']:.3f}" for n in ns) + " |"
                      for name, v in bon.items()]
            lines.append("")
        rfm = [r for r in entry["methods"].get("rfm", []) if "fp32" in r]
        if rfm:
            diffs = {m: np.mean([r["new_responses"]["shots"][m]["accuracy"] - r["fp32"]["new_responses"]["shots"][m]
                                 ["accuracy"] for r in rfm]) for m in rfm[0]["new_responses"]["shots"]}
            lines += ["int8 minus fp32, new responses (rfm): " +
                      ", ".join(f"m={m}: {100 * v:+.2f} pts" for m, v in diffs.items()), ""]
    (out / "personalization.md").write_text("\n".join(lines) + "\n")


def training_report(path: Path, out: Path) -> None:
    results = json.loads(Path(path).read_text())
    lines = ["# Training time and accuracy", "", f"Command: `{results['command']}`", "",
             "| dataset | tune | cache | pairs | texts encoded | seconds | s per 1,000 pairs | epochs (best) | "
             "train acc | val acc | few-shot acc |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in results["runs"]:
        fewshot = f"{r['fewshot_acc']:.3f}" if r.get("fewshot_acc") is not None else "-"
        lines.append(f"| {r['dataset']} | {r['tune']} | {r['cache']} | {r['pairs']} | {r.get('encoded_texts') or '-'} | "
                     f"{r['seconds']:.1f} | {r['s_per_1000_pairs']:.1f} | {r.get('epochs_run', '-')} "
                     f"({r.get('best_epoch', '-')}) | {r['train_acc']:.3f} | {r['val_acc']:.3f} | {fewshot} |")
    (out / "training.md").write_text("\n".join(lines) + "\n")
