import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from vmgen.errors import ServerTypeUnavailable
from vmgen.laptop.providers.hetzner import key_fingerprint
from vmgen.laptop.providers.hetzner_sizes import TypeOffer, bake_type, choose_type


def offer(name, cores, memory, available=True, deprecated=False, location="fsn1"):
    return TypeOffer(name, cores, memory, cores * 20, location, available, deprecated, 0.01 * cores, 6.0 * cores)


OFFERS = [
    offer("cx22", 2, 4, deprecated=True),
    offer("cx23", 2, 4),
    offer("cx33", 4, 8),
    offer("cx43", 8, 16),
    offer("cx53", 16, 32),
    offer("cpx11", 2, 2),
    offer("ccx13", 2, 8, available=False),
]


@pytest.mark.parametrize("preset, expected", [("small", "cx23"), ("medium", "cx33"), ("large", "cx43")])
def test_presets_pick_from_the_current_shared_family(preset, expected):
    assert choose_type(OFFERS, preset, "fsn1").name == expected


def test_presets_follow_what_the_location_offers_today():
    renamed = [offer("cx24", 2, 4), offer("cx34", 4, 8), offer("cx44", 8, 16), offer("cx23", 2, 4, deprecated=True)]
    assert choose_type(renamed, "small", "fsn1").name == "cx24"


def test_explicit_type():
    assert choose_type(OFFERS, "cpx11", "fsn1").name == "cpx11"


@pytest.mark.parametrize(
    "wanted, reason", [("cx22", "is deprecated"), ("ccx13", "is not available in fsn1"), ("cx99", "does not exist")]
)
def test_unusable_types_list_the_alternatives(wanted, reason):
    with pytest.raises(ServerTypeUnavailable, match=reason) as caught:
        choose_type(OFFERS, wanted, "fsn1")
    assert "available in fsn1: cpx11, cx23, cx33, cx43, cx53" in str(caught.value)


def test_snapshots_are_baked_on_the_smallest_disk_of_the_launch_architecture():
    arm = replace(offer("cax11", 2, 4), disk_gb=20, architecture="arm")
    sold_out = replace(offer("cx12", 1, 2), disk_gb=20, available=False)
    pricier = replace(offer("cpx11", 2, 2), price_hourly=0.05)  # 40 GB too
    offers = [offer("cx23", 2, 4), pricier, offer("cx33", 4, 8), offer("cx43", 8, 16), arm, sold_out]
    assert bake_type(offers, "large", "fsn1").name == "cx23"
    assert bake_type(offers, "cax11", "fsn1").name == "cax11"


def test_fingerprint_matches_ssh_keygen(tmp_path: Path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    public = (tmp_path / "k.pub").read_text().strip()
    shown = subprocess.run(
        ["ssh-keygen", "-l", "-E", "md5", "-f", str(tmp_path / "k.pub")], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert key_fingerprint(public) == shown.removeprefix("MD5:")
