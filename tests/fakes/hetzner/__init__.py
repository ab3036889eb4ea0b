"""Simulated Hetzner Cloud for tests: the real `hcloud` client talks to it, and its servers boot
for real as systemd + cloud-init containers on the local Docker engine.

    with FakeHetzner(image="vmgen-debian12:latest") as cloud:
        client = hcloud.Client(token=cloud.token, api_endpoint=cloud.api_endpoint)
        ...

`boot=False` keeps everything in memory (no Docker): for fast unit tests of API handling.
"""

from .catalog import default_locations, default_server_types, default_system_images
from .fake import Fault, FakeHetzner, RecordedRequest
from .model import Deprecation, Image, Location, Price, ServerType, TypeLocation
from .vms import cleanup_orphans

__all__ = [
    "FakeHetzner", "Fault", "RecordedRequest", "cleanup_orphans",
    "default_locations", "default_server_types", "default_system_images",
    "Deprecation", "Image", "Location", "Price", "ServerType", "TypeLocation",
]
