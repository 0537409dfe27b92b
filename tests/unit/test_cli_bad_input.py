"""Every command of ``medchain``, found by walking the click tree (a new command
is covered without being listed), given each kind of bad input an operator
hands it: a missing or malformed config, a broken genesis, a stopped node,
wrong key permissions, a wrong passphrase, deeply nested JSON. Each must end
with one line on stderr and a non-zero status, never a traceback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from medchain.cli.main import cli
from medchain.storage.crypto import Signer
from medchain.storage.keyfile import PASSPHRASE_ENV, save_key

# Commands that start or wait for long-running work; their bad input is covered
# by the e2e tests (test_cli_errors, test_storage_damage).
SKIP = {"demo", "bench", "node start", "portal open"}
NESTED = "[" * 50_000 + "]" * 50_000


def leaves(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, cmd in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            yield from leaves(cmd, path + " ")
        elif path not in SKIP:
            yield path, cmd


COMMANDS = list(leaves(cli))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    good = d / "good.key"
    save_key(good, Signer.generate())
    loose = d / "loose.key"
    save_key(loose, Signer.generate())
    loose.chmod(0o644)
    sealed = d / "sealed.key"
    save_key(sealed, Signer.generate(), "right horse", opslimit=1, memlimit=8192)
    (d / "malformed.toml").write_text("this is [not toml\n")
    (d / "genesis.toml").write_text("chain_id = 3\n[[organizations]]\n")
    (d / "node.toml").write_text(
        'org_id = "a"\ndata_dir = "data"\nkey_file = "good.key"\n'
        'listen = "/ip4/127.0.0.1/tcp/1"\ngenesis = "genesis.toml"\nrpc_socket = "no.sock"\n'
    )
    (d / "nested.json").write_text(NESTED)
    (d / "empty").write_text("[]")
    (d / "dir").mkdir()
    return {
        "good": good,
        "loose": loose,
        "sealed": sealed,
        "missing": d / "missing.toml",
        "malformed": d / "malformed.toml",
        "broken genesis": d / "node.toml",
        "genesis": d / "genesis.toml",
        "nested": d / "nested.json",
        "empty": d / "empty",
        "dir": d / "dir",
        "socket": d / "no.sock",
    }


def fill(cmd: click.Command, files: dict[str, Path], **override: str) -> list[str]:
    """A command line with every required parameter given a plausible value."""
    args: list[str] = []
    for p in cmd.params:
        name = p.name or ""
        if isinstance(p, click.Option) and not p.is_flag and (p.required or name in override):
            value = override.get(name)
            if value is None:
                value = value_for(p, files)
            args += [p.opts[0], value]
        elif isinstance(p, click.Argument) and p.required:
            args.append(override.get(name) or value_for(p, files))
    for name in override:
        if not any(p.name == name for p in cmd.params):
            return []
    return args


def value_for(p: click.Parameter, files: dict[str, Path]) -> str:
    t = p.type
    if isinstance(t, click.Choice):
        return str(t.choices[0])
    if isinstance(t, click.IntRange | click.types.IntParamType):
        return "1"
    if isinstance(t, click.Path):
        if not t.file_okay:
            return str(files["dir"])
        return str(files["good"] if "key" in (p.name or "") else files["empty"])
    return "x"


def run(argv: list[str], env: dict[str, str] | None = None) -> click.testing.Result:
    base = {k: None for k in os.environ if k.startswith("MEDCHAIN_")}
    return CliRunner().invoke(cli, argv, env={**base, **(env or {})}, catch_exceptions=True)


def assert_one_line(r: click.testing.Result, argv: list[str]) -> None:
    where = " ".join(a if len(a) < 60 else a[:20] + "…" for a in argv)
    assert r.exception is None or isinstance(r.exception, SystemExit), (
        f"medchain {where}: {type(r.exception).__name__}: {r.exception}"
    )
    assert r.exit_code != 0, f"medchain {where} succeeded: {r.output}"
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert "Traceback" not in r.stderr and "unexpected error" not in r.stderr, r.stderr
    if r.exit_code == 2:  # usage: click's "Usage: ... / Try ... / Error: ..."
        assert lines and lines[-1].startswith("Error:"), f"medchain {where}: {r.stderr}"
    else:
        assert len(lines) == 1 and lines[0].startswith("Error:"), f"medchain {where}: {r.stderr}"


CASES: dict[str, dict[str, str]] = {
    "missing config": {"config": "missing"},
    "malformed config": {"config": "malformed"},
    "broken genesis in config": {"config": "broken genesis"},
    "broken genesis file": {"genesis_file": "genesis"},
    "stopped node": {"socket_path": "socket"},
    "key with loose permissions": {"key": "loose"},
    "admin key with loose permissions": {"admin_key": "loose"},
    "encrypted key, wrong passphrase": {"key": "sealed"},
    "nested JSON args": {"args_json": "nested"},
    "nested JSON file": {"claim_file": "nested"},
    "key is a directory": {"key": "dir"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_command_refuses_bad_input_in_one_line(case: str, files: dict[str, Path]) -> None:
    covered = 0
    for path, cmd in COMMANDS:
        override = {
            k: (NESTED if k == "args_json" else str(files[v])) for k, v in CASES[case].items()
        }
        args = fill(cmd, files, **override)
        if not args:
            continue
        covered += 1
        argv = [*path.split(), *args]
        assert_one_line(run(argv, {PASSPHRASE_ENV: "wrong"}), argv)
    assert covered, f"no command takes the input of {case!r}"


def test_every_command_without_arguments_is_a_usage_error_or_help() -> None:
    for path, _ in COMMANDS:
        r = run(path.split())
        assert r.exception is None or isinstance(r.exception, SystemExit), (path, r.exception)
        assert "Traceback" not in r.stderr
