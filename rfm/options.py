"""Every command's options as dataclasses: the one place for a default, its choices and its help text.

The click options of each command are generated from these fields (`click_options`), as TRL builds
its argument parsers from `field(metadata={"help": ...})`; library functions take the same names.
`rfm train`'s fields are `rfm.train.config.TrainConfig`, `rfm demo`'s `rfm.demo.DemoConfig`.
Standard library only (no click, numpy or torch at import), so `rfm --help` stays fast.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from typing import Any


class Device(str, Enum):
    AUTO = "auto"  # CUDA when onnxruntime-gpu sees a GPU, else CPU
    CPU = "cpu"
    CUDA = "cuda"


class Precision(str, Enum):
    AUTO = "auto"  # int8 on CPU, fp16 on GPU
    FP32 = "fp32"
    INT8 = "int8"
    FP16 = "fp16"


class Prior(str, Enum):
    """How a user's weights are fitted from their choices (one name on every command)."""

    POPULATION = "population"  # MAP towards the population's weights (empirical Bayes)
    NONE = "none"  # plain L2 towards zero (the paper's)
    MIXTURE = "mixture"  # a Gaussian at each training rater's weights, weighed by the user's choices


def values(enum: type[Enum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


def opt(default: Any = None, help: str = "", choices: type[Enum] | tuple[str, ...] | None = None, *,
        cli: bool = True, flag: bool = False, min: float | None = None, path: str | None = None,
        name: str | None = None, short: str | None = None) -> Any:
    """A config field: `choices` an Enum or tuple, `min` a lower bound, `path` 'file' or 'dir', `name` the CLI
    spelling when it is not --field-name (`short`: also -x), `flag` a boolean switch, `cli=False` library-only."""
    if isinstance(choices, type) and issubclass(choices, Enum):
        choices = values(choices)
    return field(default=default, metadata={"help": help, "choices": choices, "cli": cli, "flag": flag, "min": min,
                                            "path": path, "name": name, "short": short})


def click_options(config: type, exclude: tuple[str, ...] = ()):
    """A decorator adding one click option per CLI field of the dataclass `config`."""
    import click

    def click_type(f, default):
        meta = f.metadata
        if meta["choices"]:
            return click.Choice(list(meta["choices"]))
        if meta["path"]:
            return click.Path(dir_okay=meta["path"] == "dir", file_okay=meta["path"] == "file")
        kind = {"int": int, "float": float, "str": str}.get(str(f.type).split(" | ")[0], type(default))
        if meta["min"] is not None:
            return click.IntRange(meta["min"]) if kind is int else click.FloatRange(meta["min"])
        return kind

    def int_tuple(ctx, param, value: str) -> tuple[int, ...]:
        try:
            items = tuple(int(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
        if not items:
            raise click.BadParameter("expected at least one integer")
        return items

    def decorate(command):
        chosen = [f for f in fields(config) if f.metadata.get("cli") and f.name not in exclude]
        for f in reversed(chosen):
            meta = f.metadata
            default = f.default if f.default is not MISSING else None
            flags = [f"--{meta['name'] or f.name.replace('_', '-')}", *([meta["short"]] if meta["short"] else [])]
            if meta["flag"]:  # a switch; one whose default is on is spelled --no-... (its `name`)
                command = click.option(*flags, f.name, is_flag=True, flag_value=not default, default=bool(default),
                                       help=meta["help"])(command)
            elif isinstance(default, tuple):  # integers, given as '0,5,10'
                command = click.option(*flags, f.name, default=",".join(map(str, default)), show_default=True,
                                       callback=int_tuple, help=meta["help"])(command)
            else:
                command = click.option(*flags, f.name, type=click_type(f, default), default=default,
                                       show_default=default is not None, help=meta["help"])(command)
        return command

    return decorate


THREADS_HELP = ("CPU threads. The texts of a call run as this many concurrent one-thread onnxruntime calls, "
                "one text alone on all of them (default: the cores this process may use; onnxruntime's own "
                "default, one per physical core, for that lone text).")


@dataclass
class RuntimeOptions:
    """Where and how the runtime runs: the options of adapt, feedback, score, rerank, eval, serve."""

    store: str | None = opt(None, "User store root (default: $RFM_HOME, else the platform's user data dir).",
                            path="dir")
    device: str = opt(Device.AUTO.value, "auto: CUDA when onnxruntime-gpu sees a GPU, else CPU.", Device)
    precision: str = opt(Precision.AUTO.value, "auto: int8 on CPU, fp16 on GPU.", Precision)
    threads: int | None = opt(None, THREADS_HELP, min=1)


@dataclass
class AdaptOptions:
    """The option of the commands that fit a user's weights (adapt, feedback)."""

    prior: str | None = opt(None, "Adapter prior: the population's (empirical Bayes), plain L2 towards zero, or a "
                            "mixture of Gaussians at the training raters' weights (measured: "
                            "benchmarks/results/mixture_prior.md). It is stored with the user; later feedback "
                            "keeps it (default: the user's stored prior, else population).", Prior)


@dataclass
class ServeOptions:
    """`rfm serve`'s own options (with RuntimeOptions)."""

    host: str = opt("127.0.0.1", "Address to bind. Anything but loopback exposes users' data to the network: it "
                    "needs --allow-remote.")
    port: int = opt(8765, "TCP port (0: any free one).", min=0)
    allow_remote: bool = opt(False, "Allow a --host that is not loopback (prints a warning).", flag=True)
    no_auth: bool = opt(False, "Serve without the bearer token: any program on this machine can then read, change "
                        "and delete every user's data. For tests and sandboxes.", flag=True)
    token_file: str | None = opt(None, "Where the bearer token lives (created on first start, owner-only). "
                                 "Default: serve-token in the user data dir ($RFM_HOME).", path="file")
    coalesce: str = opt("auto", "Merge concurrent requests into one onnxruntime call. auto: off; measured to gain "
                        "nothing on a CPU and to lose throughput on an H100, where the tokeniser, not the GPU, is "
                        "the bottleneck (benchmarks/results/serve.md, gpu_latency.md).",
                        ("auto", "on", "off"))
    timeout: float = opt(30.0, "Seconds a request may take before its caller gets 504 timeout.", min=0.1)


@dataclass
class EvalOptions:
    """`rfm eval`'s own options (with RuntimeOptions less --store)."""

    shots: str = opt("0,5,10,20,50", "Shot counts m (0 = population prior).")
    repeats: int = opt(5, "Random draws of each user's m choices.", min=1)
    seed: int = opt(0, "Seed of the draws.")
    prior: str = opt(Prior.POPULATION.value, "Adapter prior, as on the other runtime commands: the population's "
                     "(empirical Bayes), plain L2 towards zero (the paper's), or the mixture over the training "
                     "raters' weights.", Prior)
    C: float = opt(1.0, "Inverse L2 strength for --prior none.", name="C")
    seen: bool = opt(False, "DATA is the seen-user test split: use each rater's trained weights.", flag=True)
    versus: str | None = opt(None, "Another artifact (e.g. the one-size model) scored on the same users and "
                             "draws: this one minus it at each m, paired over users, with a 95% CI.")
    questions: bool = opt(False, "Also adapt each user from m questions asked as `rfm ask` asks them (one at a "
                          "time, the most informative pair of a pool of their pairs) vs m random pairs of that pool, "
                          "scored on the same test pairs, which share no response with the pool.", flag=True)


@dataclass
class ExportOptions:
    """`rfm export`'s options."""

    precision: str = opt("fp32,int8", "Comma-separated: fp32 (always), int8 (CPU), fp16 (GPU).")
    opset: int = opt(18, "ONNX opset.", min=14)
    validation_data: str | None = opt(None, "JSONL pairs to validate int8 decisions on (default: a built-in "
                                      "sample).", path="file")
    quantization: str = opt("auto", "int8 config. auto: right on every CPU of this architecture (x86-64: "
                            "x86_portable, uint8 x 7-bit int8 weights, which cannot saturate on AVX2 CPUs without "
                            "VNNI); host: the best for this machine's ISA, for an artifact that runs only on such "
                            "CPUs.", ("auto", "host", "x86_portable", "avx512_vnni", "avx512", "avx2", "arm64"))
    overwrite: bool = opt(False, "Replace an existing artifact dir.", flag=True)


@dataclass
class BenchOptions:
    """`rfm bench`'s options."""

    device: str = opt("cpu,cuda", "Devices to try (missing ones are skipped).")
    precision: str | None = opt(None, "Precisions to try: auto (what the runtime picks: int8 on CPU, fp16 on GPU), "
                                "fp32, int8, fp16. Default: auto; with --full: fp32,int8,fp16.")
    batch: str = opt("1,8,32", "Batch sizes.")
    seq_len: str | None = opt(None, "Sequence lengths. Default: 256; with --full: 64,128,256,512.")
    full: bool = opt(False, "The whole grid (every precision and length: minutes on a laptop); the default answers "
                     "the common question (the runtime's own precision at 256 tokens) in about a minute.", flag=True)
    threads: int | None = opt(None, "onnxruntime (and torch) threads.", min=1)
    repeats: int = opt(10, "Timed calls per cell (min).", min=1)
    warmup: int = opt(2, "Untimed calls per cell first.", min=0)
    min_time: float = opt(0.3, "Seconds per cell at least.")
    compare: str = opt("none", "torch: also time the source run dir in PyTorch eager (fp32 on the CPU, fp16 on "
                       "CUDA), model only and end to end with its own tokenizer (needs the [train] extra).",
                       ("none", "torch"))
    run_dir: str | None = opt(None, "Run dir for --compare torch (default: the one the artifact was exported from).",
                              path="dir", name="run")
