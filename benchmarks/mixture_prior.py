"""The mixture prior (`--prior mixture`) against the shipped population prior, through the int8 runtime.

The same RFM artifacts as `personalization.py` (its cached training and export stages, 3 seeds), the
same held-out users, draws and new-response protocol; only the adapter differs: MAP under the
population's one Gaussian, or the posterior mean under an equal mixture of Gaussians of 0.3 x its
covariance at every training rater's row (`rfm.adapt.mixture`). The one-size rows are read from
`personalization.json` (same splits, seeds and draws), so "never worse than one-size" is checked too.

    python benchmarks/mixture_prior.py                       # ~35 min on the 2-core host
    python benchmarks/mixture_prior.py --datasets taste,s2
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cli_args import benchmark_parser, command_line  # noqa: E402
from personalization import (  # noqa: E402
    METHODS,
    REAL_DATASETS,
    REPEATS,
    SHOTS_REAL,
    SHOTS_SYNTHETIC,
    prepare,
    train_and_export,
)
from report import _mean_shots, markdown_table, paired_differences  # noqa: E402
from rfm.runtime import FeatureExtractor, load_artifact  # noqa: E402

from rfm.data.jsonl import load_pairs  # noqa: E402
from rfm.evaluation import evaluate_heldout, featurise_pairs, group_by_user, user_adapter  # noqa: E402
from rfm.pipeline import cached_json  # noqa: E402

DATASETS = ("taste", "s2", "s2-small", "jester", "tldr")
PRIORS = {"population": "rfm, population prior (shipped)", "mixture": "rfm, mixture prior"}


def measure(art: Path, split: Path, seed: int, shots) -> dict:
    """Both adapters on the same users and draws of one artifact (int8 where it has it)."""
    artifact = load_artifact(art)
    precision = "int8" if "int8" in artifact.precisions else "fp32"
    extractor = FeatureExtractor(artifact, device="cpu", precision=precision)
    pairs = load_pairs(split / "heldout.jsonl")
    users = group_by_user(pairs, featurise_pairs(extractor, pairs))
    adapters, rows = {prior: user_adapter(artifact, prior) for prior in PRIORS}, {}
    for prior, adapter in adapters.items():
        started = time.perf_counter()
        result = evaluate_heldout(users, adapter, shots, REPEATS, seed, disjoint=True, by_user=True)
        fits = len(users) * REPEATS * sum(1 for m in shots if m)
        rows[prior] = {"seed": seed, "precision": precision, "new_responses": result,
                       "ms_per_fit": round(1e3 * (time.perf_counter() - started) / max(fits, 1), 2)}
    rows["mixture"]["components"] = len(adapters["mixture"].estimator.rows)
    return rows


def dataset_lines(name: str, entry: dict) -> list[str]:
    shots = [str(m) for m in entry["shots"]]
    methods = {label: entry["rows"][prior] for prior, label in PRIORS.items()}
    if entry.get("one_size"):
        methods["one-size (personalization.json)"] = entry["one_size"]
    table = []
    for label, rows in methods.items():
        acc = _mean_shots(rows, "new_responses")
        users = rows[0]["new_responses"]["users"]
        table.append([label, *(f"{acc[m][0]:.3f}" + (f" ± {acc[m][1]:.3f}" if acc[m][1] else "") for m in shots),
                      str(users), f"{np.mean([r['ms_per_fit'] for r in rows]):.1f}" if "ms_per_fit" in rows[0] else "-"])
    lines = [f"## {name} ({entry['rows']['mixture'][0]['components']} rater rows; {entry['measured_by']})", "",
             *markdown_table(["adapter", *(f"m={m}" for m in shots), "users", "ms per fit"], table), ""]
    pairs = [("mixture minus population", entry["rows"]["mixture"], entry["rows"]["population"])]
    if entry.get("one_size"):
        pairs.append(("mixture minus one-size", entry["rows"]["mixture"], entry["one_size"]))
    for label, rows, base in pairs:
        diffs = paired_differences(rows, base)
        if diffs:
            lines.append(f"- {label}: " + "; ".join(
                f"m={m} {100 * d['diff']:+.1f} [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"
                for m, d in diffs.items() if m != "0"))
    return [*lines, ""]


def report(results: dict, out: Path) -> None:
    lines = ["# Mixture prior vs the population prior (same RFM artifacts, users and draws)", "",
             "Held-out users, new responses (no test pair shares a response with the adaptation pairs), the "
             "same users at every m, 3 draws per user and m, int8 through the runtime, mean ± sd over "
             f"training seeds {results['seeds']}. Paired lines: each user's accuracy averaged over the seeds, "
             "the difference in points averaged over users, 95% bootstrap CI over users. `ms per fit`: one "
             "user's adaptation on this host (2 cores), m averaged over the shot counts.", ""]
    for name, entry in results["datasets"].items():
        lines += dataset_lines(name, entry)
    (out / "mixture_prior.md").write_text("\n".join(lines))


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"Comma-separated subset of {', '.join(DATASETS)}.")
    args = parser.parse_args()
    names = args.datasets.split(",")
    if unknown := [n for n in names if n not in DATASETS]:
        parser.error(f"--datasets: unknown {', '.join(unknown)}")
    started = time.perf_counter()
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = prepare(work, Path(args.data_dir), quick=False)
    seeds = [int(s) for s in args.seeds.split(",")]
    command = command_line("mixture_prior.py", parser, args, ("datasets", "seeds"))
    path = out / "mixture_prior.json"
    results = json.loads(path.read_text()) if path.is_file() else {"datasets": {}}  # a re-run keeps other datasets
    results["seeds"] = seeds
    reference = out / "personalization.json"
    reference = json.loads(reference.read_text())["datasets"] if reference.is_file() else {}
    for name in names:
        shots = SHOTS_REAL if name in REAL_DATASETS else SHOTS_SYNTHETIC
        rows: dict[str, list] = {prior: [] for prior in PRIORS}
        for seed in seeds:
            folder = work / "models" / name / f"rfm-s{seed}"
            art, _ = train_and_export(splits[name], folder, METHODS["rfm"], seed)
            measured = cached_json(folder / "mixture_prior.json",
                                   [art / "rfm.json", splits[name] / "heldout.jsonl", list(shots),
                                    ROOT / "adapt" / "mixture.py"],
                                   lambda art=art, seed=seed, split=splits[name], shots=shots: measure(art, split, seed, shots))
            for prior in PRIORS:
                rows[prior].append(measured[prior])
            print(f"[{time.perf_counter() - started:6.0f}s] {name} seed {seed}: " + " | ".join(
                prior + " " + " ".join(f"m={m}:{measured[prior]['new_responses']['shots'][str(m)]['accuracy']:.3f}"
                                       for m in shots) for prior in PRIORS), flush=True)
        one_size = reference.get(name, {}).get("methods", {}).get("one-size")
        results["datasets"][name] = {
            "shots": list(shots), "rows": rows,
            "one_size": one_size if one_size and [r["seed"] for r in one_size] == seeds else None,
            "measured_by": f"`{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"}
        path.write_text(json.dumps(results, indent=1))  # each finished dataset is kept
        report(results, out)


if __name__ == "__main__":
    main()
