"""Default catalog of the simulated cloud: three German/Finnish locations, the current cost-optimized
server types, a deprecated one, one not offered in hel1, and a few system images.

Location coordinates and descriptions are the real ones; prices are plausible, not current, in
the API's shape (model.Price): decimal strings, net with 10 places and gross with 16, gross = net
plus 19 % VAT, as hcloud-python's fixture tests/unit/server_types/conftest.py records them
(cx21 in fsn1: hourly net "0.0080000000", gross "0.0095200000000000").
"""

from __future__ import annotations

from .model import Deprecation, Image, Location, Price, ServerType, TypeLocation

ALL_LOCATIONS = ("fsn1", "nbg1", "hel1")

# cx22 was deprecated in the 2025-10-16 changelog entry and removed at the start of 2026.
CX22_DEPRECATION = Deprecation("2025-10-16T00:00:00+00:00", "2026-01-01T00:00:00+00:00")


def default_locations() -> list[Location]:
    return [
        Location(
            1, "fsn1", "Falkenstein DC Park 1", "DE", "Falkenstein", 50.47612, 12.370071, datacenter_name="fsn1-dc14"
        ),
        Location(2, "nbg1", "Nuremberg DC Park 1", "DE", "Nuremberg", 49.452102, 11.076665, datacenter_name="nbg1-dc3"),
        Location(3, "hel1", "Helsinki DC Park 1", "FI", "Helsinki", 60.169855, 24.938379, datacenter_name="hel1-dc2"),
    ]


def _offered(*names: str, deprecation: Deprecation | None = None) -> list[TypeLocation]:
    return [TypeLocation(n, recommended=(n == "fsn1"), deprecation=deprecation) for n in names]


def default_server_types() -> list[ServerType]:
    return [
        ServerType(
            22,
            "cx22",
            2,
            4,
            40,
            Price("3.7900", "0.0060"),
            _offered(*ALL_LOCATIONS, deprecation=CX22_DEPRECATION),
            deprecation=CX22_DEPRECATION,
        ),
        ServerType(114, "cx23", 2, 4, 40, Price("2.9900", "0.0048"), _offered(*ALL_LOCATIONS)),
        ServerType(115, "cx33", 4, 8, 80, Price("4.9900", "0.0080"), _offered(*ALL_LOCATIONS)),
        ServerType(116, "cx43", 8, 16, 160, Price("8.9900", "0.0144"), _offered(*ALL_LOCATIONS)),
        ServerType(117, "cx53", 16, 32, 320, Price("16.9900", "0.0272"), _offered("fsn1", "nbg1")),
    ]


def default_system_images() -> list[Image]:
    return [
        Image(161547269, "system", "ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04"),
        Image(67794396, "system", "ubuntu-22.04", "Ubuntu 22.04", "ubuntu", "22.04"),
        Image(114690387, "system", "debian-12", "Debian 12", "debian", "12"),
        Image(310557660, "system", "debian-13", "Debian 13", "debian", "13"),
    ]
