"""`rfm export`: run dir -> self-checking ONNX artifact (needs the [train] extra)."""

from __future__ import annotations

import click

from rfm.cli.common import echo_json, info, str_list
from rfm.cli.train import require_train_extra
from rfm.options import ExportOptions, click_options


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(file_okay=False), required=True, help="Artifact dir to write.")
@click_options(ExportOptions)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as one JSON object.")
def export(run: str, output: str, precision: str, opset: int, validation_data: str | None, quantization: str,
           overwrite: bool, as_json: bool) -> None:
    """Export RUN's feature graph (backbone + pooling + head) to ONNX through Hugging Face Optimum.

    Validates fp32 against torch (max abs diff <= 1e-4) and int8 against fp32 (mean cosine >= 0.99,
    pairwise decisions agree >= 98%); the export fails if a bound is missed.
    """
    require_train_extra()
    from rfm.export.build import export_run

    precisions = str_list(precision, "--precision", ("fp32", "int8", "fp16"))
    manifest = export_run(run, output, precisions, opset=opset, validation_data=validation_data,
                          quant_target=quantization, overwrite=overwrite, log=lambda m: None if as_json else info(m))
    if as_json:
        echo_json({"output": output, **manifest.to_json()})
        return
    val = manifest.validation
    line = f"wrote {output}: d={manifest.features}, fp32 vs torch {val['fp32_vs_torch_max_abs_diff']:.1e}"
    if "int8" in val:
        line += f", int8 cosine {val['int8']['mean_cosine']:.4f}, agreement {val['int8']['pair_agreement']:.3f}"
    sizes = ", ".join(f"{p} {manifest.sizes_bytes[f] / 1e6:.1f} MB" for p, f in manifest.precisions.items())
    info(f"{line}; {sizes}; {manifest.export['seconds']:.1f}s")
