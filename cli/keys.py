"""Key commands."""

from __future__ import annotations

from pathlib import Path

import click

from medchain.storage.crypto import Signer
from medchain.storage.keyfile import KeyFileError, load_key, save_key


@click.command()
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Key file to write (mode 0600).",
)
@click.option(
    "--encrypt",
    is_flag=True,
    help="Encrypt the key with a passphrase (asked for, or MEDCHAIN_KEY_PASSPHRASE).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the public key as JSON.")
def keygen(out: Path, encrypt: bool, as_json: bool) -> None:
    """Create an Ed25519 key file."""
    import json
    import os

    passphrase = None
    if encrypt:
        passphrase = os.environ.get("MEDCHAIN_KEY_PASSPHRASE") or click.prompt(
            "Passphrase", hide_input=True, confirmation_prompt=True
        )
    signer = Signer.generate()
    try:
        save_key(out, signer, passphrase)
        load_key(out, passphrase)  # read back: never leave an unusable key behind
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "key_file": str(out),
                    "public_key": signer.public_key.hex(),
                    "encrypted": bool(passphrase),
                }
            )
        )
    else:
        click.echo(f"wrote {out} (mode 0600{', encrypted' if passphrase else ''})")
        click.echo(f"public key: {signer.public_key.hex()}")
