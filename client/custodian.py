"""Which member organization is the custodian of a FHIR resource, from what
the population itself says.

The institution behind a resource is read from its own references, most
specific first:

1. its encounter's ``serviceProvider`` (when the population has encounters);
2. an organization it names directly (``serviceProvider``, ``custodian``,
   ``organization``, ``managingOrganization``, ``owner``, ``provider``,
   ``insurer``, or a performer/author/requester that is an Organization);
3. the organization of a practitioner it names (``performer``, ``requester``,
   ``recorder``, ``asserter``, ``author``; from PractitionerRole resources),
   or of a location it names (``location``; from Location resources).

A provider map then turns the institution into a member organization (by the
institution's name or identifier value); an institution the map does not
name goes to the default custodian when one is given. A resource that names
no institution at all (Synthea's AllergyIntolerance and Device name only the
patient) goes to the patient's main custodian — the member that holds most of
the patient's other records — and else to the default custodian.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medchain.storage.fhirdoc import encounter_id

# Fields that name an organization, a practitioner or a location.
ORG_FIELDS = (
    "serviceProvider",
    "custodian",
    "organization",
    "managingOrganization",
    "owner",
    "provider",
    "insurer",
)
PERSON_FIELDS = ("performer", "requester", "recorder", "asserter", "author", "participant")
LOCATION_FIELDS = ("location",)
# Reference data: what the directory learns from, never records themselves.
DIRECTORY_TYPES = ("Organization", "Location", "PractitionerRole", "Encounter")


def ref_parts(ref: Any) -> tuple[str | None, str | None]:
    """(resource type, id or identifier value) of a FHIR reference in any of the
    shapes bulk exports use: ``Type/id``, ``Type?identifier=system|value``, or a
    logical ``{"identifier": {"value": ...}}``."""
    if not isinstance(ref, dict):
        return None, None
    text = ref.get("reference")
    if isinstance(text, str) and text:
        if "?" in text:
            kind, _, query = text.partition("?")
            return kind or None, query.rsplit("|", 1)[-1].rsplit("=", 1)[-1] or None
        kind, _, ident = text.rpartition("/")
        return kind.rsplit("/", 1)[-1] or None, ident.split(":")[-1] or None
    logical, declared = ref.get("identifier"), ref.get("type")
    if isinstance(logical, dict) and isinstance(logical.get("value"), str):
        return (declared if isinstance(declared, str) else None), logical["value"]
    return None, None


def _refs(value: Any) -> Iterator[dict[str, Any]]:
    """The references in a field: a reference, a list of them, or elements holding
    one under ``actor``/``individual``/``location``/``who`` (performer, participant)."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict):
            continue
        if "reference" in item or "identifier" in item:
            yield item
        for inner in ("actor", "individual", "location", "who"):
            if isinstance(item.get(inner), dict):
                yield item[inner]


def _keys(resource: dict[str, Any]) -> list[str]:
    """A resource's id and identifier values: what references to it may carry."""
    keys = [str(resource["id"])] if isinstance(resource.get("id"), str) else []
    idents = resource.get("identifier")
    for ident in idents if isinstance(idents, list) else []:
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            keys.append(ident["value"])
    return keys


@dataclass(frozen=True)
class Institution:
    """An organization named by the population: its key and, when known, its name."""

    key: str | None
    name: str | None


@dataclass
class Directory:
    """What a population's reference data says about its institutions."""

    names: dict[str, str] = field(default_factory=dict)  # organization key -> name
    practitioner_org: dict[str, dict[str, Any]] = field(default_factory=dict)
    location_org: dict[str, dict[str, Any]] = field(default_factory=dict)
    encounter_org: dict[str, dict[str, Any]] = field(default_factory=dict)

    def learn(self, r: dict[str, Any]) -> None:
        kind = r.get("resourceType")
        if kind == "Organization" and isinstance(r.get("name"), str):
            for k in _keys(r):
                self.names[k] = r["name"]
        elif kind == "Location" and isinstance(r.get("managingOrganization"), dict):
            for k in _keys(r):
                self.location_org[k] = r["managingOrganization"]
        elif kind == "PractitionerRole" and isinstance(r.get("organization"), dict):
            _, who = ref_parts(r.get("practitioner"))
            if who:
                self.practitioner_org.setdefault(who, r["organization"])
        elif kind == "Encounter" and isinstance(r.get("serviceProvider"), dict):
            self.encounter_org[str(r.get("id"))] = r["serviceProvider"]

    def _institution(self, ref: dict[str, Any]) -> Institution:
        _, key = ref_parts(ref)
        display = ref.get("display")
        name = display if isinstance(display, str) else self.names.get(key or "")
        return Institution(key, name)

    def institutions(self, r: dict[str, Any]) -> Iterator[Institution]:
        """The institutions the resource points at, most specific first."""
        enc = encounter_id(r)
        if enc is not None and enc in self.encounter_org:
            yield self._institution(self.encounter_org[enc])
        for f in ORG_FIELDS:
            for ref in _refs(r.get(f)):
                kind, _ = ref_parts(ref)
                if kind in (None, "Organization"):
                    yield self._institution(ref)
        for f in PERSON_FIELDS:
            for ref in _refs(r.get(f)):
                kind, key = ref_parts(ref)
                if kind == "Organization":
                    yield self._institution(ref)
                elif key in self.practitioner_org:
                    yield self._institution(self.practitioner_org[key])
        for f in LOCATION_FIELDS:
            for ref in _refs(r.get(f)):
                _, key = ref_parts(ref)
                if key in self.location_org:
                    yield self._institution(self.location_org[key])


@dataclass
class ProviderMap:
    """Institution (name or identifier value) -> member organization id."""

    table: dict[str, str]
    default: str | None = None  # where institutions the table does not name go

    @classmethod
    def load(cls, path: Path | None, default: str | None = None) -> ProviderMap:
        if path is None:
            return cls({}, default)
        doc = tomllib.loads(Path(path).read_text())
        table = doc.get("providers", {})
        if not isinstance(table, dict):
            raise ValueError(f"{path}: [providers] must be a table of name = organization id")
        return cls({str(k): str(v) for k, v in table.items()}, default)

    def org_for(self, ref: dict[str, Any]) -> str | None:
        """The member for one organization reference (e.g. an encounter's serviceProvider)."""
        inst = Directory()._institution(ref)
        for k in (inst.name, inst.key):
            if k is not None and k in self.table:
                return self.table[k]
        return self.default


NO_INSTITUTION = ""  # the resource names no institution: see the module docstring


def custodian_of(r: dict[str, Any], directory: Directory, providers: ProviderMap) -> str | None:
    """The member for a resource; NO_INSTITUTION when it names no institution; None
    when it names institutions that neither the map nor a default place."""
    named = False
    for inst in directory.institutions(r):
        named = True
        for k in (inst.name, inst.key):
            if k is not None and k in providers.table:
                return providers.table[k]
    if named:
        return providers.default
    return NO_INSTITUTION
