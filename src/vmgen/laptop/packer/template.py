"""The Packer HCL2 template for a baked Hetzner snapshot (hcloud builder), as a pure function.

The provisioning steps are not restated here: the template runs bake.sh, the same rendered
install steps cloud-init runs on a stock image, which sits next to the template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ...contract.names import VM
from ..builder.install import BAKE_CLEANUP
from ..stamps import ImageStamp

BAKE_SCRIPT = "bake.sh"
PLUGIN_VERSION = ">= 1.6.0"


@dataclass(frozen=True)
class SnapshotBuild:
    base_image: str
    location: str
    server_type: str
    stamp: ImageStamp
    endpoint: str = ""  # a non-default Hetzner API URL
    owner: tuple[tuple[str, str], ...] = ()  # the owner labels (see owner.py): who baked it


def hcl_string(value: str) -> str:
    """A quoted HCL string: JSON escapes, plus HCL's own template sequences made literal."""
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")


def render_template(build: SnapshotBuild, wheel_path: str) -> str:
    """`wheel_path`: the vmgen wheel's path below the drop folder (VmgenWheel.relative_path); the
    wheel itself lies next to the template under its file name."""
    labels = build.stamp.labels(build.base_image) | dict(build.owner)
    label_lines = "\n".join(f"    {hcl_string(k)} = {hcl_string(v)}" for k, v in labels.items())
    endpoint = f"\n  endpoint      = {hcl_string(build.endpoint)}" if build.endpoint else ""
    cleanup = ",\n      ".join(hcl_string(line) for line in BAKE_CLEANUP)
    name = f"vmgen-{build.stamp.agent}-{build.stamp.vmgen}"
    return f'''# Rendered by vmgen: a snapshot with every install step baked in.
# Run: packer init . && packer build .   (HCLOUD_TOKEN in the environment)
packer {{
  required_plugins {{
    hcloud = {{
      source  = "github.com/hetznercloud/hcloud"
      version = {hcl_string(PLUGIN_VERSION)}
    }}
  }}
}}

variable "hcloud_token" {{
  type      = string
  sensitive = true
  default   = env("HCLOUD_TOKEN")
}}

source "hcloud" "vmgen" {{
  token         = var.hcloud_token{endpoint}
  image         = {hcl_string(build.base_image)}
  location      = {hcl_string(build.location)}
  server_type   = {hcl_string(build.server_type)}
  ssh_username  = "root"
  snapshot_name = "{name}-${{formatdate("YYYYMMDDhhmmss", timestamp())}}"
  snapshot_labels = {{
{label_lines}
  }}
}}

build {{
  sources = ["source.hcloud.vmgen"]

  provisioner "shell" {{
    inline = ["cloud-init status --wait || true"]
  }}

  # The vmgen wheel the bake script installs, where it looks for one a bake put in place.
  provisioner "shell" {{
    inline = [{hcl_string(f"install -d -m 0700 {VM.incoming / wheel_path.rsplit('/', 1)[0]}")}]
  }}

  provisioner "file" {{
    source      = "${{path.root}}/{wheel_path.rsplit("/", 1)[1]}"
    destination = {hcl_string(str(VM.incoming / wheel_path))}
  }}

  provisioner "shell" {{
    script = "${{path.root}}/{BAKE_SCRIPT}"
  }}

  provisioner "shell" {{
    inline = [
      {cleanup}
    ]
  }}
}}
'''
