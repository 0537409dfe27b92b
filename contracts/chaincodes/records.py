"""records: the notary. One anchor per off-chain record version: record id,
patient pseudonym, custodian organization, category (FHIR resource type),
clinical year, SHA-256 of the canonical content, a Merkle root over salted
fields (for selective disclosure), the authoring practitioner and their
signature. Only the custodian's practitioners (or its admin, for imports)
anchor; an amendment adds a version that supersedes the previous one and
never overwrites it.

The chain holds the clinical *year* only: an exact date beside a pseudonym can
single a person out (a birth date, from an immunization given at birth). The
exact date stays with the custodian, inside the record and its fields root.
An anchor with any field beyond those below is refused, so a client cannot
put more on chain by mistake.

Every anchor written emits one event (``anchored`` for version 1, ``amended``
after) carrying exactly the anchor: the receipt of the transaction commits to
it, so an evidence certificate proves one anchor of a bulk import without
disclosing the others (storage.receipts, docs/evidence.md).

State: rec/<record id>/<version> -> anchor; head/<record id> -> latest
version; pat/<patient>/<clinical year>/<record id> -> "" (the timeline).
"""

from __future__ import annotations

from medchain.contracts.sdk import (
    Args,
    Context,
    Record,
    Reject,
    Result,
    Value,
    anchor_sign_bytes,
    arg_bytes,
    arg_id,
    arg_int,
    arg_list,
    arg_str,
    args_dict,
    be4,
    query,
    require,
    transaction,
    verify_signature,
)

MAX_BULK = 2000
ANCHOR_ARGS = (
    "author",
    "author_sig",
    "category",
    "clinical_year",
    "content_hash",
    "custodian",
    "fields_root",
    "patient",
    "record_id",
    "supersedes",
)


def head(ctx: Context, record_id: str) -> Value:
    return ctx.get_obj(b"head/" + record_id.encode())


def write_anchor(ctx: Context, a: Record, version: int, supersedes: int) -> Record:
    who = ctx.caller
    custodian = who.org
    if custodian is None:  # (require_custodian_writer has let only a provider's members in)
        raise Reject("only practitioners or admins of the custodian anchor records")
    extra = a.keys() - ANCHOR_ARGS
    if extra:
        raise Reject(
            "an anchor carries only "
            + ", ".join(ANCHOR_ARGS)
            + f"; not {', '.join(sorted(str(k) for k in extra))}"
            + " (exact dates stay with the custodian)"
        )
    # The anchor names its custodian explicitly (so offline evidence can check the
    # author's signature); it must be the organization of whoever anchors it.
    require(arg_id(a, "custodian") == custodian, f"the custodian named is not {custodian}")
    record_id = arg_id(a, "record_id")
    patient = arg_id(a, "patient")
    category = arg_str(a, "category", 64)
    require(
        category.isascii() and category.isalpha() and category[0].isupper(),
        "category must be a FHIR resource type (letters only, e.g. Condition)",
    )
    clinical_year = arg_int(a, "clinical_year", 1000, 9999)
    content_hash = arg_bytes(a, "content_hash", 32)
    fields_root = arg_bytes(a, "fields_root", 32)
    author = arg_bytes(a, "author", 32)
    # When the author signs the transaction themselves, that signature covers every
    # anchored field; otherwise (an import system submitting for a practitioner) the
    # anchor carries the author's own signature over it.
    author_sig = arg_bytes(a, "author_sig", 64, optional=True)
    pat = ctx.read("registry", b"pat/" + patient.encode())
    require(pat is not None and pat["status"] == "active", f"patient {patient} is not registered")
    writer = ctx.identity(author)
    require(
        writer.is_practitioner_of(custodian),
        f"the author is not an active practitioner of {custodian}",
    )
    if author_sig is None:
        require(
            author == who.key,
            "an anchor submitted by someone else than its author carries the author's signature",
        )
        author_sig = b""
    else:
        message = anchor_sign_bytes(
            ctx.genesis.chain_id,
            record_id,
            version,
            patient,
            custodian,
            category,
            clinical_year,
            content_hash,
            fields_root,
        )
        require(
            verify_signature(author, message, author_sig),
            f"the author's signature on {record_id} does not verify",
        )
    # The event carries the anchor as stored, without what the block says.
    event = {
        "record_id": record_id,
        "version": version,
        "supersedes": supersedes,
        "patient": patient,
        "custodian": custodian,
        "category": category,
        "clinical_year": clinical_year,
        "content_hash": content_hash,
        "fields_root": fields_root,
        "author": author,
        "author_id": writer.id,
        "author_sig": author_sig,
    }
    anchor = dict(event, height=ctx.height, timestamp_ms=ctx.timestamp_ms, tx_id=ctx.tx_id)
    ctx.put_obj(b"rec/" + record_id.encode() + b"/" + be4(version), anchor)
    ctx.put_obj(
        b"head/" + record_id.encode(),
        {"version": version, "custodian": custodian, "patient": patient},
    )
    if version == 1:
        ctx.put(
            b"pat/" + patient.encode() + b"/" + be4(clinical_year) + b"/" + record_id.encode(), b""
        )
    ctx.emit("anchored" if version == 1 else "amended", event)
    return anchor


def require_custodian_writer(ctx: Context) -> None:
    who = ctx.caller
    require(
        who.kind in ("practitioner", "org-admin") and who.active,
        "only practitioners or admins of the custodian anchor records",
    )
    require(
        who.org_role in ("hospital", "clinic", "exam-centre"),
        "only care providers are custodians of records",
    )


@transaction
def anchor(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    require_custodian_writer(ctx)
    record_id = arg_id(a, "record_id")
    require(
        head(ctx, record_id) is None, f"record {record_id} is already anchored; amend it instead"
    )
    write_anchor(ctx, a, 1, 0)
    return {"record_id": record_id, "version": 1}


@transaction
def amend(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    require_custodian_writer(ctx)
    record_id = arg_id(a, "record_id")
    h = head(ctx, record_id)
    require(h is not None, f"record {record_id} is not anchored")
    require(
        h["custodian"] == ctx.caller.org,
        f"only the custodian ({h['custodian']}) may amend {record_id}",
    )
    require(arg_id(a, "patient") == h["patient"], "an amendment cannot change the patient")
    expected = arg_int(a, "supersedes", 1)
    require(expected == h["version"], f"{record_id} is at version {h['version']}, not {expected}")
    rec = write_anchor(ctx, a, h["version"] + 1, h["version"])
    return {"record_id": record_id, "version": rec["version"]}


@transaction
def anchor_bulk(ctx: Context, args: Args) -> Result:
    """Many anchors in one transaction (imports). Idempotent: a record already
    anchored with the same content is reported as "exists", not anchored again."""
    a = args_dict(args)
    require_custodian_writer(ctx)
    items = arg_list(a, "anchors", MAX_BULK)
    results = []
    anchored = 0
    for item in items:
        it = args_dict(item)
        record_id = arg_id(it, "record_id")
        h = head(ctx, record_id)
        if h is not None:
            cur = ctx.get_obj(b"rec/" + record_id.encode() + b"/" + be4(h["version"]))
            same = (
                cur is not None
                and cur["content_hash"] == it.get("content_hash")
                and h["custodian"] == ctx.caller.org
            )
            results.append({"record_id": record_id, "status": "exists" if same else "conflict"})
            continue
        write_anchor(ctx, it, 1, 0)
        anchored += 1
        results.append({"record_id": record_id, "status": "anchored"})
    return {"anchored": anchored, "results": results}


# -- queries ------------------------------------------------------------------------


@query
def get(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    record_id = arg_id(a, "record_id")
    h = head(ctx, record_id)
    if h is None:
        raise Reject(f"record {record_id} is not anchored")
    version = arg_int(a, "version", 1, optional=True) or h["version"]
    rec = ctx.get_obj(b"rec/" + record_id.encode() + b"/" + be4(version))
    if rec is None:
        raise Reject(f"record {record_id} has no version {version}")
    rec["latest_version"] = h["version"]
    return rec


@query
def history(ctx: Context, args: Args) -> Result:
    record_id = arg_id(args_dict(args), "record_id")
    return [v for _, v in ctx.scan_obj(b"rec/" + record_id.encode() + b"/")]


@query
def by_patient(ctx: Context, args: Args) -> Result:
    """Every record of a patient across custodians, by clinical year (latest versions);
    within a year the custodians order them by date for those allowed to know it."""
    patient = arg_id(args_dict(args), "patient")
    prefix = b"pat/" + patient.encode() + b"/"
    out = []
    for k, _ in ctx.scan(prefix):
        record_id = k[len(prefix) + 5 :].decode()
        h = head(ctx, record_id)
        rec = ctx.get_obj(b"rec/" + record_id.encode() + b"/" + be4(h["version"]))
        out.append(rec)
    return out
