"""dictionary: code systems and concept maps (ICD-10 <-> SNOMED CT), in the
spirit of FHIR CodeSystem and ConceptMap, maintained by regulators.

State: sys/<system> -> {name, version}; code/<system>|<code> -> {display};
map/<system>|<code>/<target system>|<target code> -> {equivalence}.
"""

from __future__ import annotations

from medchain.contracts.sdk import (
    Args,
    Context,
    Record,
    Reject,
    Result,
    Value,
    arg_choice,
    arg_list,
    arg_str,
    args_dict,
    query,
    require,
    transaction,
)

ICD10 = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
EQUIVALENCES = ("equivalent", "equal", "wider", "narrower", "inexact")


def require_regulator(ctx: Context) -> None:
    who = ctx.caller
    require(
        who.is_admin_of() and who.org_role == "regulator",
        "only a regulator maintains the code dictionary",
    )


def code_key(system: str, code: str) -> bytes:
    return (system + "|" + code).encode()


def check_code(code: Value) -> Value:
    require(
        isinstance(code, str) and 0 < len(code) <= 64 and "|" not in code and "/" not in code,
        f"invalid code {code!r}",
    )
    return code


def check_system(ctx: Context, system: str) -> None:
    require(ctx.get_obj(b"sys/" + system.encode()) is not None, f"unknown code system {system}")


@transaction
def add_system(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    require_regulator(ctx)
    system = arg_str(a, "system", 200)
    require("|" not in system, "a system URI cannot contain '|'")
    ctx.put_obj(
        b"sys/" + system.encode(),
        {"system": system, "name": arg_str(a, "name", 200), "version": arg_str(a, "version", 64)},
    )
    ctx.emit("system", {"system": system})
    return {"system": system}


@transaction
def add_codes(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    require_regulator(ctx)
    system = arg_str(a, "system", 200)
    check_system(ctx, system)
    codes = arg_list(a, "codes", 5000)
    for c in codes:
        item = args_dict(c)
        ctx.put_obj(
            b"code/" + code_key(system, check_code(item.get("code"))),
            {"display": arg_str(item, "display", 300)},
        )
    return {"system": system, "added": len(codes)}


@transaction
def add_mappings(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    require_regulator(ctx)
    source = arg_str(a, "source", 200)
    target = arg_str(a, "target", 200)
    check_system(ctx, source)
    check_system(ctx, target)
    mappings = arg_list(a, "mappings", 5000)
    for m in mappings:
        item = args_dict(m)
        sc = check_code(item.get("source_code"))
        tc = check_code(item.get("target_code"))
        eq = arg_choice(item, "equivalence", EQUIVALENCES, optional=True) or "equivalent"
        require(
            ctx.get_obj(b"code/" + code_key(source, sc)) is not None,
            f"{sc} is not a code of {source}",
        )
        require(
            ctx.get_obj(b"code/" + code_key(target, tc)) is not None,
            f"{tc} is not a code of {target}",
        )
        ctx.put_obj(
            b"map/" + code_key(source, sc) + b"/" + code_key(target, tc), {"equivalence": eq}
        )
        if eq in ("equivalent", "equal"):
            ctx.put_obj(
                b"map/" + code_key(target, tc) + b"/" + code_key(source, sc), {"equivalence": eq}
            )
    ctx.emit("mappings", {"source": source, "target": target, "count": len(mappings)})
    return {"added": len(mappings)}


@query
def lookup(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    system = arg_str(a, "system", 200)
    code = check_code(a.get("code"))
    rec = ctx.get_obj(b"code/" + code_key(system, code))
    if rec is None:
        raise Reject(f"{code} is not a code of {system}")
    return {"system": system, "code": code, "display": rec["display"]}


@query
def translate(ctx: Context, args: Args) -> list[Record]:
    """Codes in ``target`` that map from (system, code), with their equivalence."""
    a = args_dict(args)
    system = arg_str(a, "system", 200)
    code = check_code(a.get("code"))
    target = arg_str(a, "target", 200)
    prefix = b"map/" + code_key(system, code) + b"/" + target.encode() + b"|"
    return [
        {"system": target, "code": k[len(prefix) :].decode(), "equivalence": v["equivalence"]}
        for k, v in ctx.scan_obj(prefix)
    ]


@query
def matches(ctx: Context, args: Args) -> Result:
    """True if code (system, code) is, or maps equivalently/narrower to, any of ``any_of``."""
    a = args_dict(args)
    system = arg_str(a, "system", 200)
    code = check_code(a.get("code"))
    wanted = [
        (str(w.get("system")), str(w.get("code")))
        for w in arg_list(a, "any_of", 500)
        if isinstance(w, dict)
    ]
    if (system, code) in wanted:
        return True
    for w_system, w_code in wanted:
        if w_system == system:
            continue
        for t in translate(ctx, {"system": system, "code": code, "target": w_system}):
            if t["code"] == w_code and t["equivalence"] in ("equivalent", "equal", "narrower"):
                return True
    return False
