"""AWS instance types vmgen offers, with their prices: a static table, since EC2 has no price API
of its own (the Price List API is another service, in two regions, with another credential).

Prices: on-demand, Linux, us-east-1, USD an hour, from https://aws.amazon.com/ec2/pricing/on-demand/
(the table as of 2026-12). Other regions cost somewhat more; `vmgen sizes` says whose prices these are.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ServerTypeUnavailable
from ..spec import SIZE_PRESETS

PRICE_REGION = "us-east-1"
HOURS_A_MONTH = 730  # AWS's own month for monthly figures
# gp3's storage price in us-east-1 (USD per GB-month), from https://aws.amazon.com/ebs/pricing/.
GP3_GB_MONTH = 0.08
ROOT_GB = 40
# EBS snapshots' standard tier in us-east-1 (USD per GB-month of data stored), same page.
SNAPSHOT_GB_MONTH = 0.05


@dataclass(frozen=True)
class InstanceType:
    name: str
    cores: int  # vCPUs
    memory_gb: float
    price_hourly: float


TYPES = (
    InstanceType("t3.small", 2, 2, 0.0208),
    InstanceType("t3.medium", 2, 4, 0.0416),
    InstanceType("t3.large", 2, 8, 0.0832),
    InstanceType("t3.xlarge", 4, 16, 0.1664),
    InstanceType("t3.2xlarge", 8, 32, 0.3328),
    InstanceType("m7i.large", 2, 8, 0.1008),
    InstanceType("m7i.xlarge", 4, 16, 0.2016),
    InstanceType("m7i.2xlarge", 8, 32, 0.4032),
    InstanceType("c7i.large", 2, 4, 0.0893),
    InstanceType("c7i.xlarge", 4, 8, 0.1785),
)
BY_NAME = {t.name: t for t in TYPES}
# The burstable family, as the other clouds' shared-vCPU presets.
PRESET_TYPES = dict(zip(SIZE_PRESETS, ("t3.medium", "t3.large", "t3.xlarge"), strict=True))


def instance_type(wanted: str) -> str:
    """A preset or one of the table's types -> the instance type to run; anything else is refused
    before anything is made."""
    if wanted in PRESET_TYPES:
        return PRESET_TYPES[wanted]
    if wanted in BY_NAME:
        return wanted
    raise ServerTypeUnavailable(
        f"instance type {wanted!r} is not one vmgen offers on aws; choose a preset "
        f"({', '.join(SIZE_PRESETS)}) or one of: {', '.join(BY_NAME)}"
    )


def price_hourly(name: str) -> float | None:
    found = BY_NAME.get(name)
    return found.price_hourly if found else None
