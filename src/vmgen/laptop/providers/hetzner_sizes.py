"""Choosing a Hetzner server type: pure functions over the API's server-type data.

Presets are resolved at run time from what the chosen location offers today, so a renamed or
retired family (cx22 -> cx23) needs no vmgen release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ...errors import ServerTypeUnavailable
from ..spec import SIZE_PRESETS

if TYPE_CHECKING:
    from hcloud.server_types import ServerType

PRESETS = SIZE_PRESETS
# The shared-vCPU x86 family; presets pick from it by size.
PRESET_FAMILY_PREFIX = "cx"


@dataclass(frozen=True)
class TypeOffer:
    """One server type as offered in one location."""

    name: str
    cores: int
    memory_gb: float
    disk_gb: int
    location: str
    available: bool
    deprecated: bool
    price_hourly: float | None
    price_monthly: float | None
    architecture: str = "x86"

    @property
    def usable(self) -> bool:
        return self.available and not self.deprecated


_T = TypeVar("_T")


def required(value: _T | None) -> _T:
    """hcloud types every field of its models as optional, since a model may be a bare reference
    (an id or a name); in a resource the API described, the fields vmgen reads are always set."""
    assert value is not None, "a field the Hetzner API always sets is missing"
    return value


def offers_from_api(server_types: Sequence[ServerType], location: str) -> list[TypeOffer]:
    """TypeOffers for a location from hcloud's BoundServerType objects."""
    offers = []
    for st in server_types:
        per_location = {loc.location.name: loc for loc in (st.locations or [])}
        here = per_location.get(location)
        price = next((p for p in (st.prices or []) if p.get("location") == location), None)
        offers.append(
            TypeOffer(
                name=required(st.name),
                cores=required(st.cores),
                memory_gb=float(required(st.memory)),
                disk_gb=required(st.disk),
                location=location,
                available=bool(here and here.available is not False) and price is not None,
                # Per location: the type-wide `deprecation` is being phased out, and hcloud warns on
                # every read of it (hcloud-python v2.7.0, "per location server types").
                deprecated=here is not None and here.deprecation is not None,
                price_hourly=float(price["price_hourly"]["gross"]) if price else None,
                price_monthly=float(price["price_monthly"]["gross"]) if price else None,
                architecture=st.architecture or "x86",
            )
        )
    return offers


def choose_type(offers: list[TypeOffer], wanted: str, location: str) -> TypeOffer:
    """A preset (small/medium/large) or an explicit type name -> the offer to create."""
    usable = sorted((o for o in offers if o.usable), key=lambda o: (o.cores, o.memory_gb, o.name))
    if wanted in PRESETS:
        family = [o for o in usable if o.name.startswith(PRESET_FAMILY_PREFIX)]
        if len(family) < len(PRESETS):
            family = usable
        if not family:
            raise ServerTypeUnavailable(f"no server type is available in {location}")
        index = min(PRESETS.index(wanted), len(family) - 1)
        return family[index]
    match = next((o for o in offers if o.name == wanted), None)
    if match is not None and match.usable:
        return match
    alternatives = ", ".join(o.name for o in usable) or "none"
    if match is None:
        reason = "does not exist"
    elif match.deprecated:
        reason = "is deprecated"
    else:
        reason = f"is not available in {location}"
    raise ServerTypeUnavailable(f"server type {wanted!r} {reason}; available in {location}: {alternatives}")


def bake_type(offers: list[TypeOffer], wanted: str, location: str) -> TypeOffer:
    """The type to bake a snapshot on for launches of `wanted`: the smallest disk of its architecture.

    A snapshot carries its source server's disk and boots only types with at least that disk, so a
    snapshot baked on the smallest disk serves every size; x86 and Arm snapshots do not mix.
    """
    target = choose_type(offers, wanted, location)
    fitting = [o for o in offers if o.usable and o.architecture == target.architecture]
    return min(
        fitting,
        key=lambda o: (o.disk_gb, o.price_hourly if o.price_hourly is not None else float("inf"), o.cores, o.name),
    )
