"""Errors a user can cause or meet. The CLI turns each into one line and an exit code."""

from __future__ import annotations


class VmgenError(Exception):
    """A runtime failure the user should read about; exit code 1."""

    exit_code = 1


class UsageError(VmgenError):
    """The user asked for something that cannot be valid; exit code 2."""

    exit_code = 2


class InvalidSpec(UsageError):
    """A workspace name, source, agent or other setting is not acceptable."""


class ConfigError(UsageError):
    """A configuration file or value is malformed."""


class NoSSHKey(UsageError):
    """No public key to put on the workspace."""


class UserDataTooLarge(VmgenError):
    """The rendered user-data exceeds the provider's limit."""


class UserDataInvalid(VmgenError):
    """`cloud-init schema` rejected the rendered user-data."""


class ProviderUnavailable(VmgenError):
    """The provider's engine or API cannot be reached (e.g. dockerd not running)."""


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


class BakeFailed(VmgenError):
    """The install steps failed while baking an image; no image was made."""


class RemoteCommandFailed(VmgenError):
    """A command run over SSH on the workspace failed."""

    def __init__(self, message: str, remote_exit_code: int = 1) -> None:
        super().__init__(message)
        self.remote_exit_code = remote_exit_code

    @property
    def connection_lost(self) -> bool:
        """ssh's own 255: the connection failed (sshd restarting while cloud-init works)."""
        return self.remote_exit_code == 255


class ProviderActionFailed(VmgenError):
    """The provider could not do what was asked: no room to place a server, or an action on it
    that failed or did not finish."""


class ResourceLeftBehind(VmgenError):
    """Something vmgen created could not be removed and may still be billed."""


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
