"""vmgen.dns.cloudflare against the fake Cloudflare API, over real HTTP.

Retries never sleep: the client's `sleep` is a list's append, so the tests read the waits it asked for.
"""

from __future__ import annotations

import socket

import pytest
import requests

from tests.fakes.cloudflare import READONLY_TOKEN, VALID_TOKEN, FakeCloudflare
from vmgen.dns import TTL, CloudflareDns, hostnames, tag_for
from vmgen.errors import (
    DnsAuthError,
    DnsConflict,
    DnsRateLimited,
    DnsRequestFailed,
    DnsUnavailable,
    DnsZoneNotFound,
    InvalidSpec,
    UsageError,
    VmgenError,
)

ZONE = "example.com"
IP1, IP2 = "203.0.113.10", "203.0.113.20"


@pytest.fixture
def cf():
    with FakeCloudflare(zones=[ZONE, "other.org"]) as fake:
        yield fake


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def dns(cf, waits) -> CloudflareDns:
    return CloudflareDns(VALID_TOKEN, ZONE, endpoint=cf.endpoint, sleep=waits.append)


def addresses(cf: FakeCloudflare, zone: str = ZONE) -> set[tuple[str, str, str | None]]:
    return {(r["name"], r["content"], r["comment"]) for r in cf.records(zone) if r["type"] == "A"}


def assert_one_clear_line(exc: pytest.ExceptionInfo, *secrets: str) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    for secret in secrets:
        assert secret not in message
    assert isinstance(exc.value, VmgenError)
    return message


# --- the happy path --------------------------------------------------------------------------------


def test_hostnames_are_the_name_and_its_wildcard():
    assert hostnames("app", "Example.COM.") == ("app.example.com", "*.app.example.com")
    assert tag_for("app") == "vmgen:ws=app"


def test_ensure_creates_both_records_tagged_and_unproxied(cf, dns):
    created = dns.ensure_workspace("app", IP1)

    assert {(r.name, r.content) for r in created} == {("app.example.com", IP1), ("*.app.example.com", IP1)}
    records = cf.records(ZONE)
    assert len(records) == 2
    for r in records:
        assert (r["type"], r["content"], r["ttl"], r["proxied"], r["comment"]) == ("A", IP1, TTL, False, "vmgen:ws=app")
    assert dns.records_for("app") == sorted(created, key=lambda r: (r.type, r.name))


def test_rerun_updates_the_address_instead_of_duplicating(cf, dns):
    first = {r.name: r.id for r in dns.ensure_workspace("app", IP1)}
    second = {r.name: r.id for r in dns.ensure_workspace("app", IP2)}

    assert second == first  # the same records, updated in place
    assert addresses(cf) == {("app.example.com", IP2, "vmgen:ws=app"), ("*.app.example.com", IP2, "vmgen:ws=app")}


def test_rerun_with_the_same_address_writes_nothing(cf, dns):
    dns.ensure_workspace("app", IP1)
    cf.requests.clear()
    dns.ensure_workspace("app", IP1)
    assert [m for m, _ in cf.requests if m != "GET"] == []


def test_zone_id_is_looked_up_once(cf, dns):
    dns.ensure_workspace("app", IP1)
    dns.ensure_workspace("app", IP2)
    dns.remove_workspace("app")
    assert sum(1 for m, path in cf.requests if path.startswith("/client/v4/zones?")) == 1


def test_remove_deletes_exactly_the_workspace_records(cf, dns):
    dns.ensure_workspace("app", IP1)
    dns.ensure_workspace("api", IP2)
    # The user's own records under the same names, and look-alike comments, must all survive.
    cf.add_record(ZONE, "app.example.com", "A", "198.51.100.1")
    cf.add_record(ZONE, "*.app.example.com", "A", "198.51.100.2", comment="mine, hands off")
    cf.add_record(ZONE, "app.example.com", "A", "198.51.100.3", comment="VMGEN:WS=APP")  # filters ignore case
    cf.add_record(ZONE, "app.example.com", "A", "198.51.100.4", comment="vmgen:ws=app-old")
    cf.add_record(ZONE, "app.example.com", "TXT", "hello", comment="vmgen:ws=application")

    assert dns.remove_workspace("app") == 2

    assert addresses(cf) == {
        ("api.example.com", IP2, "vmgen:ws=api"),
        ("*.api.example.com", IP2, "vmgen:ws=api"),
        ("app.example.com", "198.51.100.1", None),
        ("*.app.example.com", "198.51.100.2", "mine, hands off"),
        ("app.example.com", "198.51.100.3", "VMGEN:WS=APP"),
        ("app.example.com", "198.51.100.4", "vmgen:ws=app-old"),
    }
    assert any(r["type"] == "TXT" for r in cf.records(ZONE))
    assert dns.remove_workspace("app") == 0


def test_remove_only_ipv4_spares_records_already_repointed(cf, dns):
    dns.ensure_workspace("app", IP2)  # a restore already moved the names to a new VM
    assert dns.remove_workspace("app", only_ipv4=IP1) == 0
    assert len(cf.records(ZONE)) == 2
    assert dns.remove_workspace("app", only_ipv4=IP2) == 2
    assert cf.records(ZONE) == []


def test_a_foreign_record_on_a_workspace_name_is_a_conflict_and_nothing_is_written(cf, dns):
    cf.add_record(ZONE, "*.app.example.com", "CNAME", "elsewhere.example.net")
    with pytest.raises(DnsConflict) as exc:
        dns.ensure_workspace("app", IP1)
    message = assert_one_clear_line(exc, VALID_TOKEN)
    assert "*.app.example.com" in message and "CNAME" in message
    assert isinstance(exc.value, UsageError)
    assert [r["type"] for r in cf.records(ZONE)] == ["CNAME"]  # app.example.com was not created either


def test_unrelated_records_on_the_names_do_not_conflict(cf, dns):
    cf.add_record(ZONE, "app.example.com", "TXT", "v=spf1 -all")
    dns.ensure_workspace("app", IP1)
    assert len(cf.records(ZONE)) == 3


def test_duplicates_of_our_own_records_are_collapsed(cf, dns):
    cf.add_record(ZONE, "app.example.com", "A", IP1, comment="vmgen:ws=app", ttl=TTL)
    cf.add_record(ZONE, "app.example.com", "A", IP2, comment="vmgen:ws=app", ttl=TTL)
    dns.ensure_workspace("app", IP2)
    assert addresses(cf) == {("app.example.com", IP2, "vmgen:ws=app"), ("*.app.example.com", IP2, "vmgen:ws=app")}


def test_pagination_follows_result_info_across_pages(waits):
    with FakeCloudflare(zones=[ZONE], max_per_page=2) as cf:
        for i in range(5):
            cf.add_record(ZONE, f"s{i}.app.example.com", "A", f"192.0.2.{i}", comment="vmgen:ws=app")
        cf.add_record(ZONE, "other.example.com", "A", "192.0.2.99", comment="vmgen:ws=other")
        dns = CloudflareDns(VALID_TOKEN, ZONE, endpoint=cf.endpoint, sleep=waits.append)

        assert len(dns.records_for("app")) == 5
        pages = [path for m, path in cf.requests if "/dns_records?" in path]
        assert len(pages) == 3 and all(f"page={n}" in p for n, p in zip((1, 2, 3), pages, strict=False))

        assert dns.remove_workspace("app") == 5
        assert [r["name"] for r in cf.records(ZONE)] == ["other.example.com"]


# --- errors: one clear line each, never the token -------------------------------------------------


def test_no_token_names_the_setting():
    with pytest.raises(DnsAuthError) as exc:
        CloudflareDns("  ", ZONE)
    assert "CLOUDFLARE_API_TOKEN" in assert_one_clear_line(exc)
    assert exc.value.exit_code == 2


def test_a_rejected_token_is_one_line_without_the_token(cf, waits):
    secret = "wrong-token-s3cr3t-value"
    dns = CloudflareDns(secret, ZONE, endpoint=cf.endpoint, sleep=waits.append)
    with pytest.raises(DnsAuthError) as exc:
        dns.ensure_workspace("app", IP1)
    message = assert_one_clear_line(exc, secret)
    assert "401" in message and "Zone:DNS:Edit" in message
    assert secret not in repr(dns)


def test_an_unparsable_token_is_an_auth_error_too(cf, waits):
    secret = "has spaces in it"
    with pytest.raises(DnsAuthError) as exc:
        CloudflareDns(secret, ZONE, endpoint=cf.endpoint, sleep=waits.append).zone_id()
    assert "rejected the API token" in assert_one_clear_line(exc, secret)


def test_a_read_only_token_names_the_permission_it_lacks(cf, waits):
    dns = CloudflareDns(READONLY_TOKEN, ZONE, endpoint=cf.endpoint, sleep=waits.append)
    assert dns.records_for("app") == []  # reading is allowed
    with pytest.raises(DnsAuthError) as exc:
        dns.ensure_workspace("app", IP1)
    message = assert_one_clear_line(exc, READONLY_TOKEN)
    assert "Zone:DNS:Edit" in message and "403" in message and "create app.example.com" in message
    assert cf.records(ZONE) == []


def test_a_missing_zone_is_one_line(cf, waits):
    dns = CloudflareDns(VALID_TOKEN, "not-mine.example", endpoint=cf.endpoint, sleep=waits.append)
    with pytest.raises(DnsZoneNotFound) as exc:
        dns.remove_workspace("app")
    assert "not-mine.example" in assert_one_clear_line(exc, VALID_TOKEN)


def test_429_honours_retry_after_then_succeeds(cf, dns, waits):
    cf.fail_next(2, status=429, retry_after="7")
    dns.ensure_workspace("app", IP1)
    assert waits == [7.0, 7.0]
    assert len(cf.records(ZONE)) == 2


def test_429_without_retry_after_backs_off_exponentially_and_caps(cf, waits):
    cf.fail_next(3, status=429, retry_after=None)
    CloudflareDns(VALID_TOKEN, ZONE, endpoint=cf.endpoint, sleep=waits.append).zone_id()
    assert waits == [1.0, 2.0, 4.0]
    waits.clear()
    cf.fail_next(1, status=429, retry_after="3600")
    CloudflareDns(VALID_TOKEN, ZONE, endpoint=cf.endpoint, sleep=waits.append, max_wait=30).zone_id()
    assert waits == [30.0]


def test_429_forever_gives_up_with_one_line(cf, dns, waits):
    cf.fail_next(100, status=429, retry_after="1")
    with pytest.raises(DnsRateLimited) as exc:
        dns.ensure_workspace("app", IP1)
    assert "rate limit" in assert_one_clear_line(exc, VALID_TOKEN)
    assert len(waits) == dns.max_retries
    assert len(cf.requests) == dns.max_retries + 1


def test_a_503_on_a_read_is_retried(cf, dns, waits):
    cf.fail_next(1, status=503, retry_after=None)
    assert dns.records_for("app") == []
    assert waits == [1.0]


def test_a_500_is_reported_not_retried(cf, dns, waits):
    cf.fail_next(1, status=500, retry_after=None)
    with pytest.raises(DnsRequestFailed) as exc:
        dns.zone_id()
    assert "HTTP 500" in assert_one_clear_line(exc, VALID_TOKEN)
    assert waits == []


def test_connection_refused_names_the_endpoint(waits):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/client/v4"
    dns = CloudflareDns(VALID_TOKEN, ZONE, endpoint=endpoint, sleep=waits.append, timeout=2)
    with pytest.raises(DnsUnavailable) as exc:
        dns.ensure_workspace("app", IP1)
    message = assert_one_clear_line(exc, VALID_TOKEN)
    assert endpoint in message and "connection refused" in message


def test_bad_input_fails_before_any_request(cf, dns):
    with pytest.raises(InvalidSpec):
        dns.ensure_workspace("app", "2001:db8::1")
    with pytest.raises(InvalidSpec):
        dns.ensure_workspace("App_1", IP1)
    assert cf.requests == []


# --- the fake itself: real shapes and codes -------------------------------------------------------


def test_the_fake_speaks_the_real_envelope_and_validation_codes(cf):
    api, auth = cf.endpoint, {"Authorization": f"Bearer {VALID_TOKEN}"}
    zones = requests.get(f"{api}/zones", params={"name": ZONE}, headers=auth, timeout=5).json()
    assert zones["success"] is True and zones["errors"] == [] and zones["messages"] == []
    assert zones["result_info"] == {"page": 1, "per_page": 20, "count": 1, "total_count": 1, "total_pages": 1}
    records = f"{api}/zones/{zones['result'][0]['id']}/dns_records"

    def post(body: dict) -> tuple[int, dict]:
        r = requests.post(records, json=body, headers=auth, timeout=5)
        return r.status_code, r.json()

    status, bad_ip = post({"type": "A", "name": "x", "content": "not-an-ip", "ttl": 1})
    assert status == 400 and bad_ip["success"] is False and bad_ip["errors"][0]["code"] == 9005
    assert post({"type": "BOGUS", "name": "x", "content": "1.2.3.4"})[1]["errors"][0]["code"] == 1004
    assert post({"type": "A", "name": "x", "content": "1.2.3.4", "ttl": 5})[1]["errors"][0]["code"] == 9021
    status, created = post({"type": "A", "name": "x", "content": "1.2.3.4", "ttl": 60, "comment": "c"})
    assert status == 200 and created["result"]["name"] == "x.example.com"  # relative names join the zone
    assert post({"type": "A", "name": "x.example.com", "content": "1.2.3.4"})[1]["errors"][0]["code"] == 81058
    rid = created["result"]["id"]
    patched = requests.patch(f"{records}/{rid}", json={"content": "1.2.3.5"}, headers=auth, timeout=5).json()
    assert patched["result"]["content"] == "1.2.3.5" and patched["result"]["comment"] == "c"
    assert requests.delete(f"{records}/{rid}", headers=auth, timeout=5).json()["result"] == {"id": rid}
    missing = requests.delete(f"{records}/{rid}", headers=auth, timeout=5)
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == 81044
    unauth = requests.get(f"{api}/zones", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert unauth.status_code == 401 and unauth.json()["errors"][0]["code"] == 10000


def test_the_fake_can_listen_on_all_interfaces():
    with FakeCloudflare(host="0.0.0.0") as cf:
        assert cf.endpoint.startswith("http://127.0.0.1:")
        dns = CloudflareDns(VALID_TOKEN, ZONE, endpoint=cf.endpoint)
        assert len(dns.ensure_workspace("app", IP1)) == 2
