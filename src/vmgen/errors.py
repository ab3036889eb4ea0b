"""Every error vmgen raises for a user to read, in one tree. The CLI turns each into one line on
stderr and the exit code of its class (1, or 2 for a usage error); the VM's services log it as
one line and answer the laptop with it.

VmgenError                  a runtime failure; exit code 1
├── UsageError              asked for something that cannot be valid; exit code 2
│   ├── InvalidSpec
│   │   └── SourceNotFound
│   ├── ConfigError
│   ├── DevcontainerInvalid
│   ├── DevcontainerRefused
│   ├── NoSSHKey
│   ├── WorkspaceExists
│   ├── NameBusy
│   ├── LeftoversExist
│   ├── WorkspaceNotFound
│   ├── ProviderAuthError
│   ├── ServerTypeUnavailable
│   ├── InvalidBackupRequest
│   ├── RestoreTargetNotEmpty
│   ├── DnsAuthError        (also a DnsError)
│   ├── DnsZoneNotFound     (also a DnsError)
│   └── DnsConflict         (also a DnsError)
├── DocumentError           (also a ValueError)
│   └── PageRequestError
├── UserDataTooLarge
├── UserDataInvalid
├── ProviderUnavailable
├── ProviderLimit
├── BudgetExceeded
├── ProviderActionFailed
├── ResourceLeftBehind
├── WorkspaceNotRunning
├── AgentCannotWork
├── BootFailed
│   ├── RestoreFailed
│   └── DevcontainerFailed
├── BakeFailed
├── PackerMissing
├── PackerFailed
├── RemoteCommandFailed
├── SshConfigError
├── PortInUse
├── ForwardFailed
├── TelegramUnavailable
├── DeployKeyError
├── NotServed
├── StatusUnavailable
├── BackupFailed
├── DnsError
│   ├── DnsAuthError
│   ├── DnsZoneNotFound
│   ├── DnsConflict
│   ├── DnsRateLimited
│   ├── DnsUnavailable
│   └── DnsRequestFailed
├── BackupError
│   ├── IdentityError
│   │   ├── IdentityExists
│   │   ├── PassphraseRequired
│   │   └── WrongPassphrase
│   ├── WrongIdentity
│   ├── StoreError
│   │   ├── StoreUnreachable
│   │   └── ObjectNotFound
│   ├── ManifestNotFound
│   ├── ManifestInvalid
│   ├── IntegrityError
│   │   ├── DigestMismatch
│   │   ├── ObjectTruncated
│   │   ├── SizeMismatch
│   │   └── UploadVerifyFailed
│   ├── BackupStopped
│   └── ArchiveError
├── BackupNotConfigured
├── BackupBusy
├── BackupRefused
├── ControlUnavailable
├── TickUnavailable
└── ActionFailed

Outside the tree, on purpose, each caught where it is raised: the age format's own errors
(`backup/agestream.py`, which `backup/crypto.py` turns into WrongIdentity or ArchiveError),
`vmside.agentfs.UnsafeFile` (an OSError, so that whatever handles an unreadable file handles a
refused one), and the refusals the page's two servers answer with an HTTP status
(`vmside.pageops`, `vmside.web.server`).
"""

from __future__ import annotations


class VmgenError(Exception):
    """A runtime failure the user should read about; exit code 1."""

    exit_code = 1


class UsageError(VmgenError):
    """The user asked for something that cannot be valid; exit code 2."""

    exit_code = 2


class DocumentError(VmgenError, ValueError):
    """A document does not have the shape its class says (the CLI shows it as one line)."""


class PageRequestError(DocumentError):
    """A request the page may not make (or a malformed one)."""


# --- the workspace and the laptop's side -------------------------------------------------------


class InvalidSpec(UsageError):
    """A workspace name, source, agent or other setting is not acceptable."""


class SourceNotFound(InvalidSpec):
    """The git source does not exist: its host, its repository or its branch."""


class ConfigError(UsageError):
    """A configuration file or value is malformed."""


class DevcontainerInvalid(UsageError):
    """The repository's devcontainer.json cannot be read: not found where asked, not JSON with
    comments, not an object, or one of several without `--devcontainer` to pick it."""


class DevcontainerRefused(UsageError):
    """The devcontainer.json asks for what would give the agent the VM (privileged, a host
    namespace, a capability, a mount of the VM's own folders): refused unless
    `devcontainer_allow_privileged` is set."""


class NoSSHKey(UsageError):
    """No public key to put on the workspace."""


class UserDataTooLarge(VmgenError):
    """The rendered user-data exceeds the provider's limit."""


class UserDataInvalid(VmgenError):
    """`cloud-init schema` rejected the rendered user-data."""


class WorkspaceExists(UsageError):
    """A workspace with that name already exists."""


class NameBusy(UsageError):
    """Another vmgen on this machine is launching, restoring or destroying a workspace of that name."""


class LeftoversExist(UsageError):
    """What an earlier workspace of that name left behind would be reused; `vmgen destroy` removes it."""


class WorkspaceNotFound(UsageError):
    """No workspace with that name."""


class WorkspaceNotRunning(VmgenError):
    """The workspace exists but is stopped."""


class AgentCannotWork(VmgenError):
    """The agent is not running, or waits at a login screen: a prompt would reach no one."""


class BootFailed(VmgenError):
    """The workspace did not become ready (SSH or cloud-init failed)."""


class RestoreFailed(BootFailed):
    """The new VM could not restore the backup; the agent was not started."""


class DevcontainerFailed(BootFailed):
    """`devcontainer up` failed on the VM (a build, a feature, a lifecycle command such as
    postCreateCommand): the CLI's message and the tail of its output; the agent was not started."""


class RemoteCommandFailed(VmgenError):
    """A command run over SSH on the workspace failed."""

    def __init__(self, message: str, remote_exit_code: int = 1) -> None:
        super().__init__(message)
        self.remote_exit_code = remote_exit_code

    @property
    def connection_lost(self) -> bool:
        """ssh's own 255: the connection failed (sshd restarting while cloud-init works)."""
        return self.remote_exit_code == 255


class SshConfigError(VmgenError):
    """vmgen could not write its ssh config entries or the Include line in ~/.ssh/config."""


class PortInUse(VmgenError):
    """A local port asked for a forward is taken (or not this user's to take)."""


class ForwardFailed(VmgenError):
    """ssh ended before a port forward was up."""


class DeployKeyError(VmgenError):
    """GitHub refused a workspace's deploy key (a bad token, no access, a key in use) or could
    not be reached; a launch goes on without push access."""


class TelegramUnavailable(VmgenError):
    """The Telegram Bot API refused the bot's token or a call, or could not be reached; or no
    /start came within the setup's wait."""


class NotServed(VmgenError):
    """What `vmgen open` was asked for is not on the workspace (yet)."""


class StatusUnavailable(VmgenError):
    """The workspace's watchdog has not reported (yet), or its state cannot be read."""


class BackupFailed(VmgenError):
    """The workspace could not make or verify its backup."""


# --- providers and baked images ------------------------------------------------------------------


class ProviderUnavailable(VmgenError):
    """The provider's engine or API cannot be reached (e.g. dockerd not running)."""


class ProviderAuthError(UsageError):
    """The provider's token is missing, rejected, or cannot write."""


class ProviderLimit(VmgenError):
    """The provider's project hit a limit, or its API's rate limit."""


class BudgetExceeded(VmgenError):
    """A launch would take the month's spend past `budget_month`."""


class ServerTypeUnavailable(UsageError):
    """The type asked for cannot be created in the location."""


class ProviderActionFailed(VmgenError):
    """The provider could not do what was asked: no room to place a server, or an action on it
    that failed or did not finish."""


class ResourceLeftBehind(VmgenError):
    """Something vmgen created could not be removed and may still be billed."""


class BakeFailed(VmgenError):
    """The install steps failed while baking an image; no image was made."""


class PackerMissing(VmgenError):
    """Packer is not installed; the template was written for later."""


class PackerFailed(VmgenError):
    """`packer build` failed."""


# --- DNS (Cloudflare): made by the laptop, removed by the VM's self-delete ---------------------------


class DnsError(VmgenError):
    """A Cloudflare DNS operation failed."""


class DnsAuthError(DnsError, UsageError):
    """No token, a token Cloudflare rejects, or one without permission to edit DNS."""


class DnsZoneNotFound(DnsError, UsageError):
    """The configured zone does not exist or the token cannot see it."""


class DnsConflict(DnsError, UsageError):
    """A record vmgen did not create already holds a workspace hostname."""


class DnsRateLimited(DnsError):
    """Cloudflare kept answering 429 after the retries."""


class DnsUnavailable(DnsError):
    """The Cloudflare API could not be reached (network, DNS, TLS, timeout)."""


class DnsRequestFailed(DnsError):
    """Any other API error: validation, server errors, unexpected answers."""


# --- backups: one class per way a backup or restore can fail, each message one line ---------


class BackupError(VmgenError):
    """Base of every backup/restore failure."""


class InvalidBackupRequest(UsageError):
    """Bad arguments: unknown workspace name form, malformed backup id, missing source dir."""


class IdentityError(BackupError):
    """The identity file is missing, malformed or cannot be unlocked."""


class IdentityExists(IdentityError):
    """Refusing to overwrite an identity: the backups made for it would become unreadable."""


class PassphraseRequired(IdentityError):
    """The identity is passphrase-protected and no passphrase was given."""


class WrongPassphrase(IdentityError):
    """The passphrase does not unlock the identity."""


class WrongIdentity(BackupError):
    """The identity is not the one the backup was encrypted to."""


class StoreError(BackupError):
    """The store answered with an error we cannot recover from."""


class StoreUnreachable(StoreError):
    """The store could not be reached (network, DNS, refused) after retries."""


class ObjectNotFound(StoreError):
    """A key that should exist in the store does not."""


class ManifestNotFound(BackupError):
    """No manifest: the backup does not exist or never completed."""


class ManifestInvalid(BackupError):
    """A manifest exists but cannot be parsed or is of an unknown format version."""


class IntegrityError(BackupError):
    """The stored object is not the one the manifest describes."""


class DigestMismatch(IntegrityError):
    """The object's sha256 differs from the manifest's (a damaged or altered object)."""


class ObjectTruncated(IntegrityError):
    """The object is shorter than the manifest says."""


class SizeMismatch(IntegrityError):
    """The object's size differs from the manifest's (longer than expected)."""


class UploadVerifyFailed(IntegrityError):
    """Reading the just-uploaded object back did not give the bytes that were sent."""


class BackupStopped(BackupError):
    """Root stopped the backup: it ran past its deadline, stalled, or gave way to the idle action."""


class ArchiveError(BackupError):
    """The decrypted archive is not a valid zstd/tar stream, or a member is unsafe."""


class RestoreTargetNotEmpty(UsageError):
    """The restore target exists and is not empty, and merging was not asked for."""


# --- the VM's services -----------------------------------------------------------------------------


class BackupNotConfigured(VmgenError):
    """No backup store was configured for this workspace."""


class BackupBusy(VmgenError):
    """Another backup holds the lock: nothing was done, and asking again later may succeed."""


class BackupRefused(VmgenError):
    """A backup asked for through the control socket is not started (rate limit, the idle
    action under way): nothing was done."""


class ControlUnavailable(VmgenError):
    """vmgen's control socket on the VM does not answer."""


class TickUnavailable(VmgenError):
    """The watchdog is not running, or did not answer in time."""


class ActionFailed(VmgenError):
    """The idle action could not be carried out."""
