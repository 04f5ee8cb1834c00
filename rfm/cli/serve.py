"""`rfm serve`: the local reranking service (needs the `serve` extra)."""

from __future__ import annotations

import ipaddress

import click

from rfm.cli.common import info
from rfm.errors import UsageError
from rfm.options import RuntimeOptions, ServeOptions, click_options


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.argument("artifact", type=click.Path(file_okay=False))
@click_options(ServeOptions)
@click_options(RuntimeOptions)
def serve(artifact, host, port, allow_remote, no_auth, token_file, coalesce, timeout, **runtime) -> None:
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
    run_service(artifact, host=host, port=port, auth=not no_auth, token_path=Path(token_file) if token_file else None,
                announce=info, coalesce=coalesce, timeout=timeout, **runtime)
