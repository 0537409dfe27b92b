"""No patient identifier or birth date on chain, in any store of any node.

A real consortium imports a whole Synthea population (every patient registered
under a pseudonym), a patient consents and a doctor fetches; then every key and
value of every LevelDB store of every node (ledger, block store, node state,
vault) is scanned for every identifier of the imported patients (ids, MRN, SSN,
licence and passport numbers, names, phone numbers, address lines), the source
ids of every one of their resources, and their birth dates, as text in several
formats and as day, second and millisecond numbers inside any MessagePack value. A planted positive control — one patient's
SSN and birth date written on chain through the kv chaincode — must be found on
every node, so the scan cannot pass by looking at nothing.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import plyvel
import pytest

from medchain.client.records import fetch_records
from medchain.client.signing import TxBuilder
from medchain.storage.crypto import Signer
from medchain.storage.keyfile import save_key
from tests.e2e import scenario
from tests.e2e.harness import cluster

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "synthea-10"
STORES = ("ledger", "ledger/blocks", "node-state", "vault")
CONTROL = b"planted-control"
DAY_MS = 86_400_000


def medchain(*args: str) -> subprocess.CompletedProcess[str]:
    return scenario.medchain(*args, timeout=600)


def patients(source: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(source.glob("Patient*.ndjson")):
        out.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return out


def identifiers(p: dict[str, Any]) -> set[bytes]:
    """Every value that identifies the patient, in the encodings a store could hold."""
    vals: set[str] = {p["id"]}
    vals.update(i["value"] for i in p.get("identifier", []) if isinstance(i.get("value"), str))
    for n in p.get("name", []):
        vals.update(x for x in [n.get("family"), *n.get("given", [])] if isinstance(x, str))
    vals.update(t["value"] for t in p.get("telecom", []) if isinstance(t.get("value"), str))
    for a in p.get("address", []):
        vals.update(x for x in a.get("line", []) if isinstance(x, str))
    out = {v.encode() for v in vals if len(v) >= 5}
    for v in list(vals):
        try:
            u = uuid.UUID(v)
        except ValueError:
            continue
        out.update({u.hex.encode(), u.bytes, v.upper().encode()})
    return out


def date_texts(d: datetime.date) -> set[bytes]:
    return {
        d.isoformat().encode(),
        d.strftime("%Y%m%d").encode(),
        d.strftime("%d/%m/%Y").encode(),
        d.strftime("%m/%d/%Y").encode(),
    }


def day_number(d: datetime.date) -> int:
    return (d - datetime.date(1970, 1, 1)).days


def ints_in(value: Any, depth: int = 0) -> Iterator[int]:
    """Integers anywhere in a decoded value, and in MessagePack nested as bytes."""
    if depth > 40:
        return
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from ints_in(v, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from ints_in(k, depth + 1)
            yield from ints_in(v, depth + 1)
    elif isinstance(value, bytes) and len(value) > 2:
        inner = decode(value)
        if inner is not None:
            yield from ints_in(inner, depth + 1)


def decode(raw: bytes) -> Any:
    for start in (0, 1):  # state entries carry a one-byte tag before the value
        try:
            return msgpack.unpackb(raw[start:], raw=False, strict_map_key=False)
        except Exception:
            continue
    return None


UUID = re.compile(
    rb"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)


def resource_ids(source: Path, people: set[str]) -> dict[bytes, str]:
    """The source ids (UUIDs) of every resource about the patients, in both spellings."""
    out: dict[bytes, str] = {}
    for path in sorted(source.glob("*.ndjson")):
        for line in path.read_text().splitlines():
            if not line.strip() or not any(p in line for p in people):
                continue
            rid = json.loads(line).get("id")
            if isinstance(rid, str) and UUID.fullmatch(rid.encode()):
                what = f"the source id of {path.name.split('.')[0]} {rid[:8]}"
                out[rid.lower().encode()] = out[rid.replace("-", "").lower().encode()] = what
    return out


def scan(
    store: Path, texts: dict[bytes, str], days: dict[int, str], ids: dict[bytes, str]
) -> list[tuple[str, bytes]]:
    """(what, entry) for every entry of the LevelDB at ``store`` holding a needle."""
    hits = []
    db = plyvel.DB(str(store), create_if_missing=False)
    try:
        for k, v in db.iterator():
            entry = k + b"\x00" + v
            for needle, what in texts.items():
                if needle in entry:
                    hits.append((what, entry))
            for token in UUID.findall(entry):
                what = ids.get(token.lower())
                if what is not None:
                    hits.append((what, entry))
            value = decode(v)
            if value is None:
                continue
            for n in ints_in(value):
                for day, what in days.items():
                    if n == day or day * DAY_MS <= n < (day + 1) * DAY_MS:
                        hits.append((what + " (as a number)", entry))
                    elif day * 86_400 <= n < (day + 1) * 86_400:
                        hits.append((what + " (as seconds)", entry))
    finally:
        db.close()
    return hits


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/synthea-10")
def test_no_identifier_or_birth_date_of_an_imported_patient_is_in_any_store(
    tmp_path: Path,
) -> None:
    population = patients(DATA)
    assert len(population) >= 10
    texts: dict[bytes, str] = {}
    days: dict[int, str] = {}
    for p in population:
        for ident in identifiers(p):
            texts[ident] = f"an identifier of patient {p['id'][:8]}"
        born = datetime.date.fromisoformat(p["birthDate"])
        for t in date_texts(born):
            texts[t] = f"the birth date of patient {p['id'][:8]}"
        days[day_number(born)] = f"the birth date of patient {p['id'][:8]}"
    ids = resource_ids(DATA, {p["id"] for p in population})
    assert len(ids) > 2000
    with cluster(4) as c:
        d = c.dir
        scenario.add_importers(d)
        chain = c.genesis.chain_id
        keys: dict[str, TxBuilder] = {}
        mapping: dict[str, str] = {}
        with c.client(0) as a:
            for p in population:
                b = TxBuilder(Signer.generate(), chain)
                res = a.submit(b.build("registry", "register_patient", {}), wait=True)
                assert res["status"] == "committed", res
                keys[p["id"]] = b
                mapping[p["id"]] = res["result"]["pseudonym"]
        (tmp_path / "patients.json").write_text(json.dumps(mapping))
        report = json.loads(
            medchain(
                "records",
                "import",
                "--source",
                str(DATA),
                "--dir",
                str(d),
                "--map",
                str(ROOT / "configs" / "synthea-providers.toml"),
                "--patients",
                str(tmp_path / "patients.json"),
                "--json",
            ).stdout
        )
        assert report["anchored"] > 1000, report
        # a consent with a data period, and a consented fetch by another hospital's doctor
        doc = Signer.generate()
        save_key(tmp_path / "doctor.key", doc)
        with c.client(1) as b:
            scenario.register_doctor(b, c.builders[1], doc, "B-1")
            at_a: list[str] = []
            for first in population:  # a patient with recent records at hospital A
                rows = b.call("records.timeline", {"patient": mapping[first["id"]]})
                at_a = [
                    x["record_id"]
                    for x in rows
                    if x["custodian"] == "hospital-a" and 2001 <= x["clinical_year"] <= 2029
                ][-5:]
                if at_a:
                    break
            assert at_a
            grant = scenario.org_consent(
                categories=("*",), period={"from": "2000-01-01", "to": "2030-12-31"}
            )
            scenario.send(b, keys[first["id"]], "consent", "grant", grant)
            c.sync()
            got = fetch_records(b, TxBuilder(doc, chain), at_a)
            assert all(g.status == "ok" for g in got), [(g.status, g.reason) for g in got]
            # the positive control: an identifier and a birth date put on chain on purpose
            born = datetime.date.fromisoformat(first["birthDate"])
            ssn = next(i["value"] for i in first["identifier"] if "ssn" in str(i.get("system", "")))
            control = {
                "key": CONTROL.decode(),
                "value": f"{CONTROL.decode()} {ssn} {born.isoformat()}",
                "day": day_number(born),
            }
            r = b.submit(c.builders[1].build("kv", "put", control), wait=True)
            assert r["status"] == "committed", r
        # finding 7: the evidence of one record of a bulk import says nothing of the others
        one = at_a[-1]
        ev = tmp_path / "one.mcev"
        cfg = str(d / "insurer" / "node.toml")
        medchain("evidence", "export", "--record", one, "--out", str(ev), "--config", cfg)
        medchain("evidence", "verify", str(ev), "--genesis", str(d / "genesis.toml"))
        data = ev.read_bytes()
        others = [m for pid, m in mapping.items() if pid != first["id"]]
        assert not [m for m in others if m.encode() in data], "another patient's pseudonym"
        with c.client(0) as a:
            mine = a.call("records.timeline", {"patient": mapping[first["id"]]})
        siblings = [r["record_id"] for r in mine if r["record_id"] != one]
        assert siblings and not [r for r in siblings if r.encode() in data]
        c.sync()
        for i in range(c.n):
            c.signal(i, 15)  # SIGTERM: stop cleanly, so the stores can be opened here
        leaks = []
        for node in c.nodes:
            planted = set()
            for name in STORES:
                store = node.directory / "data" / name
                assert (store / "CURRENT").exists(), store
                for what, entry in scan(store, texts, days, ids):
                    if CONTROL in entry:
                        planted.add(what)
                    else:
                        leaks.append(f"{node.org_id} {name}: {what}: {entry[:120]!r}")
            control_what = f"the birth date of patient {first['id'][:8]}"
            assert control_what in planted, f"{node.org_id}: the control was not found"
            assert control_what + " (as a number)" in planted
            assert f"an identifier of patient {first['id'][:8]}" in planted
        assert not leaks, "\n".join(leaks[:30])
