"""`rfm serve`: the local reranking service (needs the `serve` extra)."""

from __future__ import annotations

import ipaddress

import click

from rfm.cli.common import info
from rfm.errors import UsageError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.argument("artifact", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback exposes users' data to the network: it needs "
                   "--allow-remote.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--allow-remote", is_flag=True, help="Allow a --host that is not loopback (prints a warning).")
@click.option("--no-auth", is_flag=True, help="Serve without the bearer token: any program on this machine can "
              "then read, change and delete every user's data. For tests and sandboxes.")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="Where the bearer token lives (created on first start, owner-only). Default: serve-token in "
                   "the user data dir ($RFM_HOME).")
@click.option("--store", type=click.Path(file_okay=False), default=None, help="User store root.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="onnxruntime intra-op threads.")
@click.option("--coalesce", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Merge concurrent requests into one onnxruntime call. auto: on a GPU only, where it raises "
                   "throughput under load; on a CPU it gains nothing (benchmarks/results/serve.md).")
@click.option("--timeout", type=click.FloatRange(0.1), default=30.0, show_default=True,
              help="Seconds a request may take before its caller gets 504 timeout.")
def serve(artifact, host, port, allow_remote, no_auth, token_file, store, device, threads, coalesce,
          timeout) -> None:
    """Serve ARTIFACT to local apps as a JSON API (rerank, score, feedback, next question, users), keeping
    one model warm. Clients send `Authorization: Bearer <token>`; the API is described at /openapi.json
    (see the README's desktop section and examples/serve_client.*)."""
    from pathlib import Path

    try:
        from rfm.service import serve as run_service
    except ImportError:
        raise UsageError("rfm serve needs the serve extra: pip install 'rfm[serve]'") from None
    if not _is_loopback(host):
        if not allow_remote:
            raise UsageError(f"{host} is not a loopback address: pass --allow-remote to expose users' data "
                             "beyond this machine", param="host")
        info(f"rfm: WARNING: serving on {host}: other machines can reach this service")
    run_service(artifact, host=host, port=port, auth=not no_auth, store=store, device=device, threads=threads,
                token_path=Path(token_file) if token_file else None, announce=info, coalesce=coalesce,
                timeout=timeout)
