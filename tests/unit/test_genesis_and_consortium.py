"""Genesis files and `medchain consortium init`."""

from __future__ import annotations

import json
import stat
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from medchain.cli.main import cli
from medchain.node.config import NodeConfig
from medchain.storage.genesis import ConsensusParams, Genesis, GenesisError
from medchain.storage.keyfile import load_key
from tests.helpers import Consortium

ORGS = ["Hospital A:hospital", "Hospital B:hospital", "Insurer:insurer", "Regulator:regulator"]


def test_toml_round_trip_keeps_hash(consortium: Consortium) -> None:
    g = consortium.genesis
    again = Genesis.from_toml(g.to_toml())
    assert again == g and again.hash() == g.hash()
    assert replace(g, chain_id="x").hash() != g.hash()
    assert replace(g, consensus=ConsensusParams(checkpoint_interval=50)).hash() != g.hash()


@pytest.mark.parametrize(
    "edit, why",
    [
        (lambda d: d["organizations"][0].update(role="pharmacy"), "role"),
        (lambda d: d["organizations"][1].update(id="org-0"), "duplicate"),
        (
            lambda d: d["organizations"][1].update(node_key=d["organizations"][0]["node_key"]),
            "used twice",
        ),
        (lambda d: d["organizations"][0].update(node_key="abcd"), "32-byte"),
        (lambda d: d["consensus"].update(checkpoint_interval=0), "positive"),
        (lambda d: d.pop("chain_id"), "chain_id"),
        (lambda d: d["consensus"].update(bogus=1), "bogus"),
    ],
)
def test_invalid_genesis_rejected(consortium: Consortium, edit, why: str) -> None:  # type: ignore[no-untyped-def]
    import tomli_w

    doc = tomllib.loads(consortium.genesis.to_toml())
    edit(doc)
    with pytest.raises(GenesisError, match=why):
        Genesis.from_toml(tomli_w.dumps(doc))


def test_consortium_init(tmp_path: Path) -> None:
    d = tmp_path / "c"
    args = ["consortium", "init", "--dir", str(d), "--json"]
    for o in ORGS:
        args += ["--org", o]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    g = Genesis.load(d / "genesis.toml")
    assert g.hash().hex() == info["genesis_hash"]
    assert [o.org_id for o in g.organizations] == [
        "hospital-a",
        "hospital-b",
        "insurer",
        "regulator",
    ]
    assert [o.role for o in g.organizations] == ["hospital", "hospital", "insurer", "regulator"]
    listens = set()
    for o in g.organizations:
        for name in ("node.key", "admin.key"):
            p = d / o.org_id / name
            assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert load_key(d / o.org_id / "node.key").public_key == o.node_key
        assert load_key(d / o.org_id / "admin.key").public_key == o.admin_key
        cfg = NodeConfig.load(d / o.org_id / "node.toml")
        assert cfg.org_id == o.org_id and Genesis.load(cfg.genesis_file) == g
        assert cfg.key_file == d / o.org_id / "node.key"
        assert cfg.rpc_socket == d / o.org_id / "data" / "node.sock"
        assert {p.org_id for p in cfg.peers} == {x.org_id for x in g.organizations} - {o.org_id}
        listens.add(cfg.listen)
    assert len(listens) == 4
    # no private key material in the genesis or configs
    seeds = [json.loads((d / o.org_id / "node.key").read_text())["seed"] for o in g.organizations]
    public = (d / "genesis.toml").read_text() + "".join(
        (d / o.org_id / "node.toml").read_text() for o in g.organizations
    )
    assert not any(s in public for s in seeds)
    # a second init into the same directory is refused
    res = CliRunner().invoke(cli, args)
    assert res.exit_code != 0 and "already exists" in res.output


def test_consortium_init_bad_org(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli, ["consortium", "init", "--dir", str(tmp_path), "--org", "Pharmacy:pharmacy"]
    )
    assert res.exit_code != 0 and "role must be one of" in res.output
    res = CliRunner().invoke(
        cli, ["consortium", "init", "--dir", str(tmp_path), "--org", "nocolon"]
    )
    assert res.exit_code != 0 and "NAME:ROLE" in res.output


def test_example_configs_parse() -> None:
    root = Path(__file__).resolve().parents[2] / "configs"
    g = Genesis.load(root / "genesis.example.toml")
    assert len(g.organizations) == 4
    cfg = NodeConfig.load(root / "node.example.toml")
    assert cfg.org_id == "hospital-a" and len(cfg.peers) == 3
