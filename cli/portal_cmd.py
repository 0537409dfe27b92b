"""``medchain portal sign``: sign a web UI sign-in challenge with a key file.

The same sign-in serves the patient portal (a patient's key) and the
explorer (a member organization's admin key, the regulator's, or a
patient's): the node decides what the key may see from its identity on
chain. For keys the browser cannot open (passphrase-encrypted): the page
shows the challenge, this prints the public key and signature to paste back. It signs
only the portal-login message built here from the challenge — never bytes
handed over by a server — so it cannot be tricked into signing a transaction."""

from __future__ import annotations

import json
from pathlib import Path

import click

from medchain.node.web.portal import login_sign_bytes
from medchain.storage.keyfile import load_key


@click.group()
def portal() -> None:
    """Sign in to a node's web UI (patient portal and explorer)."""


@portal.command("sign")
@click.option("--key", "key_file", type=click.Path(path_type=Path), required=True)
@click.option("--chain-id", required=True, help="The chain id the page shows.")
@click.option("--audience", required=True, help="The node's organization the page shows.")
@click.option("--challenge", required=True, help="The challenge (hex) the page shows.")
@click.option("--json", "as_json", is_flag=True)
def sign(key_file: Path, chain_id: str, audience: str, challenge: str, as_json: bool) -> None:
    """Sign a web UI sign-in challenge: patient, org admin or regulator key (the key stays here)."""
    try:
        ch = bytes.fromhex(challenge)
    except ValueError:
        raise click.BadParameter("the challenge is hex digits", param_hint="--challenge") from None
    if len(ch) != 32:
        raise click.BadParameter(
            "the challenge is 32 bytes (64 hex digits)", param_hint="--challenge"
        )
    signer = load_key(
        key_file, ask=lambda: str(click.prompt("Passphrase", hide_input=True, err=True))
    )
    sig = signer.sign(login_sign_bytes(chain_id, audience, ch))
    if as_json:
        click.echo(json.dumps({"public_key": signer.public_key.hex(), "signature": sig.hex()}))
    else:
        click.echo(f"public key: {signer.public_key.hex()}")
        click.echo(f"signature:  {sig.hex()}")
