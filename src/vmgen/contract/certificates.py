"""Each hostname's certificate as the VM reports it (`vmgen vmside certificates`, the page): issued,
still being obtained, or not obtained and why, in one line a user can act on."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DocumentError
from . import codec

STATES = ("issued", "pending", "failed")


@dataclass(frozen=True)
class HostCertificate:
    hostname: str
    state: str  # one of STATES
    problem: str = ""  # failed: why, in one line (the ACME server's words included)
    at: float = 0.0  # when Caddy last said so (0: not yet)


@dataclass(frozen=True)
class CertificateReport:
    hosts: tuple[HostCertificate, ...] = ()

    @property
    def failed(self) -> tuple[HostCertificate, ...]:
        return tuple(host for host in self.hosts if host.state == "failed")

    def summary(self) -> str:
        """`7 of 7 issued`, `4 of 7 issued, 1 still being obtained`."""
        issued = sum(host.state == "issued" for host in self.hosts)
        pending = sum(host.state == "pending" for host in self.hosts)
        text = f"{issued} of {len(self.hosts)} issued"
        return text + (f", {pending} still being obtained" if pending else "")

    def lines(self) -> list[str]:
        """One line per hostname without a certificate, saying why."""
        return [f"{host.hostname}: {host.problem}" for host in self.failed]

    def dumps(self) -> str:
        return codec.dumps(self)

    @classmethod
    def loads(cls, text: str | bytes) -> CertificateReport:
        report = codec.loads(cls, text, "the certificates' report", strict=False)
        if any(host.state not in STATES for host in report.hosts):
            raise DocumentError("the certificates' report: unknown state")
        return report
