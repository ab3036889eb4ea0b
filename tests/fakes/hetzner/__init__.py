"""Simulated Hetzner Cloud for tests: the real `hcloud` client talks to it, and its servers boot
for real as systemd + cloud-init containers on the local Docker engine.

    with FakeHetzner(image="vmgen-debian12:latest") as cloud:
        client = hcloud.Client(token=cloud.token, api_endpoint=cloud.api_endpoint)
        ...

`boot=False` keeps everything in memory (no Docker): for fast unit tests of API handling.

Where the behaviours the API reference does not spell out come from:

- A snapshot keeps its source server's disk (`disk_size`, GB; hcloud-go schema `Image.DiskSize`)
  and boots only server types with at least that `disk`; otherwise the create answers 422
  `invalid_input` "image disk is bigger than server type disk". The message is the one reported
  in OpenRouterLabs/spawn PR #3176 (a cx23 refusing a snapshot made on a larger type); 422 for
  `invalid_input` as recorded in cloudpanel-io/cloudpanel-ce issue #659.
- No room for a type where it was asked: 412 `resource_unavailable` "error during placement"
  from the create call itself, a response recorded in jenkinsci/hetzner-cloud-plugin issue #21.
  A create action failing with `placement_error`: hcloud-go's error codes (`fail_action`).
- While an action runs on a server, delete included, it is locked: 423 `locked` "cannot perform
  operation because resource is locked", recorded in jenkinsci/hetzner-cloud-plugin PR #92 (a
  delete during a poweroff); hcloud-go's `ErrorCodeLocked`. The start action can outlive the
  create action for `start_action_seconds` (0 by default).
- A firewall still counts a just-deleted server for `firewall_release_seconds` (0 by default):
  422 `resource_in_use` "firewall with ID <id> is still in use", the body recorded in
  ansible-collections/hetzner.hcloud issue #380; the delay after the server's deletion reported
  in ansible-collections/hetzner.hcloud issue #112 and vitobotta/hetzner-k3s issue #625.
- Server types: `locations[].available` and `.recommended` (hcloud-python v2.18.0 changelog,
  "move available and recommended to server_type"); deprecation per location, the type-wide
  field being phased out from 2025-09-24 (hcloud-python v2.7.0 changelog and hcloud-go schema).
- Removing a firewall from something it is not applied to succeeds: `firewall_already_removed`
  is no longer sent (hcloud-go error.go marks it unused, changelog 2025-08-04 "multiple API
  behavior changes for firewalls"); what remains is 404 `firewall_resource_not_found` and 422
  `firewall_managed_by_label_selector` (the API reference for remove_from_resources).
- No datacenters: servers carry `location` only (hcloud-python v2.23.0 changelog, changelog
  2026-07-01 "removing datacenters"); `/datacenters` answers 410 (hcloud-python v2.22.0
  changelog) with hcloud-go's `deprecated_api_endpoint` code and an `announcement` detail; a
  create naming a datacenter is invalid input.
"""

from .catalog import default_locations, default_server_types, default_system_images
from .fake import FakeHetzner, Fault, RecordedRequest
from .model import Deprecation, Image, Location, Price, ServerType, TypeLocation
from .vms import cleanup_orphans

__all__ = [
    "Deprecation",
    "FakeHetzner",
    "Fault",
    "Image",
    "Location",
    "Price",
    "RecordedRequest",
    "ServerType",
    "TypeLocation",
    "cleanup_orphans",
    "default_locations",
    "default_server_types",
    "default_system_images",
]
