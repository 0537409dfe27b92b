"""registry: who is who. Organizations come from the genesis; practitioners
are registered by their organization's admin; patients register themselves
under a pseudonym derived from their public key (no name, national id or
birth date ever reaches the chain); any member can rotate or revoke keys.

State: key/<public key> -> identity {kind, id, org, role, status} (read by the
runtime to authenticate every transaction), prac/<id>, pat/<pseudonym>,
lic/<org>/<license>, orgprac/<org>/<id>.
"""

from __future__ import annotations

from medchain.contracts.sdk import (
    Args,
    Context,
    Record,
    Reject,
    Result,
    Value,
    arg_bytes,
    arg_choice,
    arg_id,
    arg_str,
    args_dict,
    pseudonym_of,
    query,
    require,
    rotation_sign_bytes,
    transaction,
    verify_signature,
)

PRACTITIONER_ROLES = ("physician", "nurse", "pharmacist", "technician", "clerk", "system")


def key_record(ctx: Context, key: bytes) -> Value:
    return ctx.get_obj(b"key/" + key)


def require_new_key(ctx: Context, key: bytes) -> None:
    require(len(key) == 32, "keys are 32-byte Ed25519 public keys")
    who = ctx.identity(key)
    require(who.kind == "unknown", f"that key is already in use (as {who.kind})")


@transaction
def register_patient(ctx: Context, args: Args) -> Result:
    who = ctx.caller
    require(who.kind == "unknown", f"this key is already registered (as {who.kind})")
    pseudonym = pseudonym_of(who.key, "patient")
    require(ctx.get_obj(b"pat/" + pseudonym.encode()) is None, "this patient is already registered")
    ctx.put_obj(
        b"pat/" + pseudonym.encode(),
        {
            "pseudonym": pseudonym,
            "status": "active",
            "registered": ctx.timestamp_ms,
            "keys": [who.key],
        },
    )
    ctx.put_obj(
        b"key/" + who.key,
        {"kind": "patient", "id": pseudonym, "org": None, "role": None, "status": "active"},
    )
    ctx.emit("patient-registered", {"patient": pseudonym})
    return {"pseudonym": pseudonym}


@transaction
def register_practitioner(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    admin = ctx.caller
    require(admin.is_admin_of(), "only an organization's admin may register practitioners")
    if admin.org is None:  # (an admin acts for its organization)
        raise Reject("only an organization's admin may register practitioners")
    key = arg_bytes(a, "key", 32)
    license_no = arg_id(a, "license")
    department = arg_str(a, "department", 128)
    role = arg_choice(a, "role", PRACTITIONER_ROLES)
    require_new_key(ctx, key)
    lic = b"lic/" + admin.org.encode() + b"/" + license_no.encode()
    require(ctx.get(lic) is None, f"license {license_no} is already registered at {admin.org}")
    pid = pseudonym_of(key, "practitioner")
    rec = {
        "id": pid,
        "org": admin.org,
        "license": license_no,
        "department": department,
        "role": role,
        "status": "active",
        "keys": [key],
        "registered": ctx.timestamp_ms,
    }
    ctx.put_obj(b"prac/" + pid.encode(), rec)
    ctx.put(lic, pid.encode())
    ctx.put(b"orgprac/" + admin.org.encode() + b"/" + pid.encode(), b"")
    ctx.put_obj(
        b"key/" + key,
        {"kind": "practitioner", "id": pid, "org": admin.org, "role": role, "status": "active"},
    )
    ctx.emit("practitioner-registered", {"practitioner": pid, "org": admin.org, "role": role})
    return {"practitioner": pid}


def load_practitioner(ctx: Context, pid: str) -> Value:
    rec = ctx.get_obj(b"prac/" + pid.encode())
    require(rec is not None, f"no practitioner {pid}")
    return rec


def set_practitioner_status(ctx: Context, rec: Record, status: str) -> None:
    rec["status"] = status
    ctx.put_obj(b"prac/" + rec["id"].encode(), rec)
    for key in rec["keys"]:
        kr = key_record(ctx, key)
        if kr is not None and kr["status"] != "revoked":
            kr["status"] = status
            ctx.put_obj(b"key/" + key, kr)


@transaction
def suspend_practitioner(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    rec = load_practitioner(ctx, arg_id(a, "practitioner"))
    who = ctx.caller
    require(
        who.is_admin_of(rec["org"]) or (who.is_admin_of() and who.org_role == "regulator"),
        "only the practitioner's organization or a regulator may suspend",
    )
    require(rec["status"] == "active", f"practitioner is {rec['status']}")
    set_practitioner_status(ctx, rec, "suspended")
    ctx.emit(
        "practitioner-suspended", {"practitioner": rec["id"], "org": rec["org"], "by": who.org}
    )
    return {"status": "suspended"}


@transaction
def reinstate_practitioner(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    rec = load_practitioner(ctx, arg_id(a, "practitioner"))
    require(
        ctx.caller.is_admin_of(rec["org"]), "only the practitioner's organization may reinstate"
    )
    require(rec["status"] == "suspended", f"practitioner is {rec['status']}")
    set_practitioner_status(ctx, rec, "active")
    ctx.emit("practitioner-reinstated", {"practitioner": rec["id"], "org": rec["org"]})
    return {"status": "active"}


@transaction
def rotate_key(ctx: Context, args: Args) -> Result:
    """The caller replaces its own key; the new key proves possession by signing."""
    a = args_dict(args)
    who = ctx.caller
    require(
        who.kind in ("patient", "practitioner", "org-admin"), "only registered members rotate keys"
    )
    new_key = arg_bytes(a, "new_key", 32)
    proof = arg_bytes(a, "proof", 64)
    require(
        verify_signature(
            new_key, rotation_sign_bytes(ctx.genesis.chain_id, who.key, new_key), proof
        ),
        "the new key's proof of possession does not verify",
    )
    require_new_key(ctx, new_key)
    old = {"kind": who.kind, "id": who.id, "org": who.org, "role": who.role, "status": "revoked"}
    ctx.put_obj(b"key/" + who.key, old)
    ctx.put_obj(
        b"key/" + new_key,
        {"kind": who.kind, "id": who.id, "org": who.org, "role": who.role, "status": "active"},
    )
    if who.kind == "practitioner":
        rec = load_practitioner(ctx, who.id)
        rec["keys"] = rec["keys"] + [new_key]
        ctx.put_obj(b"prac/" + who.id.encode(), rec)
    elif who.kind == "patient":
        rec = ctx.get_obj(b"pat/" + who.id.encode())
        rec["keys"] = rec["keys"] + [new_key]
        ctx.put_obj(b"pat/" + who.id.encode(), rec)
    ctx.emit("key-rotated", {"kind": who.kind, "id": who.id})
    return {"id": who.id}


@transaction
def revoke_key(ctx: Context, args: Args) -> Result:
    """Revoke a key: one's own, or (an admin) a practitioner's of one's organization."""
    a = args_dict(args)
    who = ctx.caller
    key = arg_bytes(a, "key", 32)
    target = ctx.identity(key)
    require(target.kind in ("patient", "practitioner", "org-admin"), "no such member key")
    require(target.status != "revoked", "that key is already revoked")
    own = key == who.key
    admin_of_prac = target.kind == "practitioner" and who.is_admin_of(target.org)
    require(
        own or admin_of_prac,
        "a key may be revoked by its owner, or by the admin of its practitioner's organization",
    )
    ctx.put_obj(
        b"key/" + key,
        {
            "kind": target.kind,
            "id": target.id,
            "org": target.org,
            "role": target.role,
            "status": "revoked",
        },
    )
    ctx.emit("key-revoked", {"kind": target.kind, "id": target.id})
    return {"revoked": target.id}


@transaction
def add_practitioner_key(ctx: Context, args: Args) -> Result:
    """An admin gives a practitioner of its organization a new key (after a revocation)."""
    a = args_dict(args)
    rec = load_practitioner(ctx, arg_id(a, "practitioner"))
    require(ctx.caller.is_admin_of(rec["org"]), "only the practitioner's organization may add keys")
    key = arg_bytes(a, "key", 32)
    require_new_key(ctx, key)
    rec["keys"] = rec["keys"] + [key]
    ctx.put_obj(b"prac/" + rec["id"].encode(), rec)
    ctx.put_obj(
        b"key/" + key,
        {
            "kind": "practitioner",
            "id": rec["id"],
            "org": rec["org"],
            "role": rec["role"],
            "status": rec["status"],
        },
    )
    return {"practitioner": rec["id"]}


# -- queries ---------------------------------------------------------------------


@query
def whoami(ctx: Context, args: Args) -> Result:
    return ctx.caller.to_value()


@query
def identity(ctx: Context, args: Args) -> Result:
    return ctx.identity(arg_bytes(args_dict(args), "key", 32)).to_value()


@query
def practitioner(ctx: Context, args: Args) -> Result:
    rec = ctx.get_obj(b"prac/" + arg_id(args_dict(args), "practitioner").encode())
    if rec is None:
        raise Reject("no such practitioner")
    return rec


@query
def practitioners(ctx: Context, args: Args) -> Result:
    org = arg_id(args_dict(args), "org")
    prefix = b"orgprac/" + org.encode() + b"/"
    return [ctx.get_obj(b"prac/" + k[len(prefix) :]) for k, _ in ctx.scan(prefix)]


@query
def patient(ctx: Context, args: Args) -> Result:
    rec = ctx.get_obj(b"pat/" + arg_id(args_dict(args), "patient").encode())
    if rec is None:
        raise Reject("no such patient")
    return {"pseudonym": rec["pseudonym"], "status": rec["status"], "registered": rec["registered"]}


@query
def organizations(ctx: Context, args: Args) -> Result:
    return [{"id": o.org_id, "name": o.name, "role": o.role} for o in ctx.genesis.organizations]
