"""Catalog (locations, server types, images), SSH keys, firewalls and actions; datacenters are gone."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from .model import Action, ApiError, Firewall, FirewallRule, Json, SshKey, invalid_field, matches_selector, not_found
from .state import Project, Request, Response, Route, labels_from, list_response, required_str, route

# The datacenters endpoints were removed (changelog 2026-07-01 "removing datacenters"); what is
# gone answers 410 with hcloud-go's deprecated_api_endpoint error and where it was announced.
DATACENTERS_GONE = "https://docs.hetzner.cloud/changelog#2026-07-01-removing-datacenters"

RESOURCE_KINDS = {"servers": "server", "firewalls": "firewall", "images": "image", "ssh_keys": "ssh_key"}


class ProjectRoutes:
    def __init__(self, project: Project, vms: Any):
        self.p = project
        self.vms = vms

    def routes(self) -> list[Route]:
        return [
            route("GET", "/locations", self.list_locations),
            route("GET", r"/locations/(?P<ident>\d+)", self.get_location),
            route("GET", r"/datacenters(/(?P<ident>\d+))?", self.datacenters_gone),
            route("GET", "/server_types", self.list_server_types),
            route("GET", "/pricing", self.get_pricing),
            route("GET", r"/server_types/(?P<ident>\d+)", self.get_server_type),
            route("GET", "/images", self.list_images),
            route("GET", r"/images/(?P<ident>\d+)", self.get_image),
            route("PUT", r"/images/(?P<ident>\d+)", self.update_image),
            route("DELETE", r"/images/(?P<ident>\d+)", self.delete_image),
            route("GET", "/ssh_keys", self.list_ssh_keys),
            route("POST", "/ssh_keys", self.create_ssh_key),
            route("GET", r"/ssh_keys/(?P<ident>\d+)", self.get_ssh_key),
            route("PUT", r"/ssh_keys/(?P<ident>\d+)", self.update_ssh_key),
            route("DELETE", r"/ssh_keys/(?P<ident>\d+)", self.delete_ssh_key),
            route("GET", "/firewalls", self.list_firewalls),
            route("POST", "/firewalls", self.create_firewall),
            route("GET", r"/firewalls/(?P<ident>\d+)", self.get_firewall),
            route("PUT", r"/firewalls/(?P<ident>\d+)", self.update_firewall),
            route("DELETE", r"/firewalls/(?P<ident>\d+)", self.delete_firewall),
            route("POST", r"/firewalls/(?P<ident>\d+)/actions/apply_to_resources", self.apply_firewall),
            route("POST", r"/firewalls/(?P<ident>\d+)/actions/remove_from_resources", self.remove_firewall),
            route("POST", r"/firewalls/(?P<ident>\d+)/actions/set_rules", self.set_firewall_rules),
            route("GET", "/actions", self.list_actions),
            route("GET", r"/actions/(?P<ident>\d+)", self.get_action),
            route("GET", r"/(?P<res>servers|firewalls|images)/actions", self.list_actions),
            route("GET", r"/(?P<res>servers|firewalls|images)/actions/(?P<ident>\d+)", self.get_action),
            route("GET", r"/(?P<res>servers|firewalls|images)/(?P<owner>\d+)/actions", self.list_actions),
        ]

    # -- catalog --------------------------------------------------------------------------------

    def list_locations(self, req: Request) -> Response:
        return list_response("locations", list(self.p.locations.values()), req, lambda loc: loc.to_json())

    def get_pricing(self, req: Request) -> Response:
        """GET /pricing, the parts vmgen reads. Shape from the API reference's "Get all prices"
        (ListPricesResponse: currency, vat_rate, image.price_per_gb_month {net, gross} as decimal
        strings), as the OpenAPI-generated `hcloud` Rust crate and WWW::Hetzner::Cloud::Pricing
        model it; the image price is Hetzner's published snapshot price, the VAT rate Germany's."""
        return 200, {
            "pricing": {
                "currency": "EUR",
                "vat_rate": "19.00",
                "image": {"price_per_gb_month": {"net": "0.0119000000", "gross": "0.0141610000000000"}},
                "volume": {"price_per_gb_month": {"net": "0.0440000000", "gross": "0.0523600000000000"}},
                "server_backup": {"percentage": "20.0000000000"},
            }
        }

    def get_location(self, req: Request, ident: str) -> Response:
        by_id = {loc.id: loc for loc in self.p.locations.values()}
        return 200, {"location": self.p.by_id(by_id, ident, "location").to_json()}

    def datacenters_gone(self, req: Request, ident: str | None = None) -> Response:
        raise ApiError(
            410, "deprecated_api_endpoint", "API functionality was removed", {"announcement": DATACENTERS_GONE}
        )

    def list_server_types(self, req: Request) -> Response:
        return list_response("server_types", list(self.p.server_types.values()), req, self.p.type_json)

    def get_server_type(self, req: Request, ident: str) -> Response:
        return 200, {"server_type": self.p.type_json(self.p.by_id(self.p.server_types, ident, "server_type"))}

    # -- images ---------------------------------------------------------------------------------

    def list_images(self, req: Request) -> Response:
        images = list(self.p.images.values())
        if types := req.args("type"):
            images = [i for i in images if i.type in types]
        if archs := req.args("architecture"):
            images = [i for i in images if i.architecture in archs]
        if statuses := req.args("status"):
            images = [i for i in images if i.status in statuses]
        return list_response("images", images, req, lambda i: i.to_json())

    def get_image(self, req: Request, ident: str) -> Response:
        return 200, {"image": self.p.by_id(self.p.images, ident, "image").to_json()}

    def update_image(self, req: Request, ident: str) -> Response:
        image = self.p.by_id(self.p.images, ident, "image")
        if "labels" in req.body:
            image.labels = labels_from(req.body)
        if isinstance(req.body.get("description"), str):
            image.description = req.body["description"]
        return 200, {"image": image.to_json()}

    def delete_image(self, req: Request, ident: str) -> Response:
        image = self.p.by_id(self.p.images, ident, "image")
        if image.type == "system":
            raise ApiError(403, "forbidden", "system images cannot be deleted")
        del self.p.images[image.id]
        if image.docker_image:
            self.vms.remove_image(image.docker_image)
        return 204, None

    # -- ssh keys -------------------------------------------------------------------------------

    def list_ssh_keys(self, req: Request) -> Response:
        keys = list(self.p.ssh_keys.values())
        if fp := req.arg("fingerprint"):
            keys = [k for k in keys if k.fingerprint == fp]
        return list_response("ssh_keys", keys, req, lambda k: k.to_json())

    def create_ssh_key(self, req: Request) -> Response:
        name = required_str(req.body, "name")
        public_key = required_str(req.body, "public_key").strip()
        fingerprint = md5_fingerprint(public_key)
        if any(k.name == name for k in self.p.ssh_keys.values()):
            raise ApiError(
                409, "uniqueness_error", "SSH key with the same name already exists", {"fields": [{"name": "name"}]}
            )
        if any(k.fingerprint == fingerprint for k in self.p.ssh_keys.values()):
            raise ApiError(
                409,
                "uniqueness_error",
                "SSH key with the same fingerprint already exists",
                {"fields": [{"name": "public_key"}]},
            )
        key = SshKey(self.p.next_id(), name, public_key, fingerprint, labels_from(req.body))
        self.p.ssh_keys[key.id] = key
        return 201, {"ssh_key": key.to_json()}

    def get_ssh_key(self, req: Request, ident: str) -> Response:
        return 200, {"ssh_key": self.p.by_id(self.p.ssh_keys, ident, "ssh_key").to_json()}

    def update_ssh_key(self, req: Request, ident: str) -> Response:
        key = self.p.by_id(self.p.ssh_keys, ident, "ssh_key")
        if "labels" in req.body:
            key.labels = labels_from(req.body)
        if isinstance(req.body.get("name"), str):
            key.name = req.body["name"]
        return 200, {"ssh_key": key.to_json()}

    def delete_ssh_key(self, req: Request, ident: str) -> Response:
        del self.p.ssh_keys[self.p.by_id(self.p.ssh_keys, ident, "ssh_key").id]
        return 204, None

    # -- firewalls ------------------------------------------------------------------------------

    def list_firewalls(self, req: Request) -> Response:
        return list_response("firewalls", list(self.p.firewalls.values()), req, self.p.firewall_json)

    def create_firewall(self, req: Request) -> Response:
        name = required_str(req.body, "name")
        if any(fw.name == name for fw in self.p.firewalls.values()):
            raise ApiError(409, "uniqueness_error", "name is already used", {"fields": [{"name": "name"}]})
        fw = Firewall(self.p.next_id(), name, parse_rules(req.body.get("rules") or []), labels_from(req.body))
        targets = parse_resources(req.body.get("apply_to") or [], "apply_to")
        self.p.firewalls[fw.id] = fw
        actions = [self._apply(fw, kind, ref) for kind, ref in targets]
        return 201, {"firewall": self.p.firewall_json(fw), "actions": [a.to_json() for a in actions]}

    def get_firewall(self, req: Request, ident: str) -> Response:
        return 200, {"firewall": self.p.firewall_json(self.p.by_id(self.p.firewalls, ident, "firewall"))}

    def update_firewall(self, req: Request, ident: str) -> Response:
        fw = self.p.by_id(self.p.firewalls, ident, "firewall")
        if "labels" in req.body:
            fw.labels = labels_from(req.body)
        if isinstance(req.body.get("name"), str):
            fw.name = req.body["name"]
        return 200, {"firewall": self.p.firewall_json(fw)}

    def delete_firewall(self, req: Request, ident: str) -> Response:
        fw = self.p.by_id(self.p.firewalls, ident, "firewall")
        if fw.in_use():
            raise ApiError(422, "resource_in_use", f"firewall with ID {fw.id} is still in use")
        del self.p.firewalls[fw.id]
        return 204, None

    def apply_firewall(self, req: Request, ident: str) -> Response:
        fw = self.p.by_id(self.p.firewalls, ident, "firewall")
        targets = parse_resources(req.body.get("apply_to") or [], "apply_to")
        return 201, {"actions": [self._apply(fw, kind, ref).to_json() for kind, ref in targets]}

    def remove_firewall(self, req: Request, ident: str) -> Response:
        fw = self.p.by_id(self.p.firewalls, ident, "firewall")
        targets = parse_resources(req.body.get("remove_from") or [], "remove_from")
        return 201, {"actions": [self._remove(fw, kind, ref).to_json() for kind, ref in targets]}

    def set_firewall_rules(self, req: Request, ident: str) -> Response:
        fw = self.p.by_id(self.p.firewalls, ident, "firewall")
        fw.rules = parse_rules(req.body.get("rules") or [])
        action = self.p.done_action("set_firewall_rules", ("firewall", fw.id))
        return 201, {"actions": [action.to_json()]}

    def _apply(self, fw: Firewall, kind: str, ref: Any) -> Action:
        if kind == "label_selector":
            if ref in fw.label_selectors:
                raise ApiError(422, "firewall_already_applied", "firewall already applied to label selector")
            fw.label_selectors.append(ref)
            return self.p.done_action("apply_firewall", ("firewall", fw.id))
        server = self.p.servers.get(int(ref))
        if server is None:
            raise ApiError(422, "firewall_resource_not_found", f"server with ID {ref} not found")
        if server.id in fw.server_ids:
            raise ApiError(422, "firewall_already_applied", "firewall already applied to server")
        fw.server_ids.append(server.id)
        return self.p.done_action("apply_firewall", ("firewall", fw.id), ("server", server.id))

    def _remove(self, fw: Firewall, kind: str, ref: Any) -> Action:
        # Removing what is not applied succeeds: firewall_already_removed is no longer sent
        # (changelog 2025-08-04, "multiple API behavior changes for firewalls").
        if kind == "label_selector":
            if ref in fw.label_selectors:
                fw.label_selectors.remove(ref)
            return self.p.done_action("remove_firewall", ("firewall", fw.id))
        server = self.p.servers.get(int(ref))
        if server is None:
            raise ApiError(404, "firewall_resource_not_found", f"server with ID {ref} not found")
        if server.id not in fw.server_ids and any(matches_selector(server.labels, s) for s in fw.label_selectors):
            raise ApiError(
                422,
                "firewall_managed_by_label_selector",
                "firewall is applied via label selector and cannot be removed manually",
            )
        if server.id in fw.server_ids:
            fw.server_ids.remove(server.id)
        return self.p.done_action("remove_firewall", ("firewall", fw.id), ("server", server.id))

    # -- actions --------------------------------------------------------------------------------

    def get_action(self, req: Request, ident: str, res: str | None = None) -> Response:
        action = self.p.by_id(self.p.actions, ident, "action")
        if res and not action.touches(RESOURCE_KINDS[res]):
            raise not_found("action", ident)
        return 200, {"action": action.to_json()}

    def list_actions(self, req: Request, res: str | None = None, owner: str | None = None) -> Response:
        actions = list(self.p.actions.values())
        if res:
            actions = [a for a in actions if a.touches(RESOURCE_KINDS[res], int(owner) if owner else None)]
        if ids := req.args("id"):
            actions = [a for a in actions if str(a.id) in ids]
        if statuses := req.args("status"):
            actions = [a for a in actions if a.status in statuses]
        return list_response("actions", actions, req, lambda a: a.to_json())


def md5_fingerprint(public_key: str) -> str:
    """Hetzner shows SSH key fingerprints as colon-separated MD5 of the key blob."""
    parts = public_key.split()
    try:
        if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
            raise ValueError
        blob = base64.b64decode(parts[1], validate=True)
    except (ValueError, binascii.Error):
        raise invalid_field("public_key", "invalid public key") from None
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


def parse_rules(raw: list[Json]) -> list[FirewallRule]:
    rules = []
    for rule in raw:
        direction, protocol = rule.get("direction"), rule.get("protocol")
        if direction not in ("in", "out") or protocol not in ("tcp", "udp", "icmp", "esp", "gre"):
            raise invalid_field("rules", "direction must be in/out and protocol tcp/udp/icmp/esp/gre")
        if protocol in ("tcp", "udp") and not rule.get("port"):
            raise invalid_field("rules", "port is required for tcp and udp")
        ips_key = "source_ips" if direction == "in" else "destination_ips"
        if not rule.get(ips_key):
            raise invalid_field("rules", f"{ips_key} is required for direction {direction}")
        rules.append(
            FirewallRule(
                direction,
                protocol,
                list(rule.get("source_ips") or []),
                list(rule.get("destination_ips") or []),
                rule.get("port"),
                rule.get("description"),
            )
        )
    return rules


def parse_resources(raw: list[Json], field_name: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for item in raw:
        if item.get("type") == "server" and isinstance(item.get("server"), dict):
            out.append(("server", item["server"].get("id")))
        elif item.get("type") == "label_selector" and isinstance(item.get("label_selector"), dict):
            out.append(("label_selector", item["label_selector"].get("selector")))
        else:
            raise invalid_field(field_name, "type must be server or label_selector")
    return out
