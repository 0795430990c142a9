"""TLS between SuperNodes, users and an in-process SuperLink (certificates made per test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from glade_testing import start_superlink
from sn_harness import run_and_wait

from glade.errors import ConfigError, TransportError
from glade.superlink import SuperLinkConfig
from glade.superlink.client import ControlClient
from glade.supernode import SuperNodeConfig
from glade.transport.tls import DevCertificates, create_dev_certificates


@pytest.fixture
def certs(tmp_path: Path) -> DevCertificates:
    return create_dev_certificates(tmp_path / "certs", hostnames=["superlink.test"])


def _tls_link(certs: DevCertificates, *, mutual: bool = False):
    return start_superlink(
        insecure=False,
        ssl_certfile=certs.server_cert,
        ssl_keyfile=certs.server_key,
        ssl_ca_certfile=certs.ca_cert if mutual else None,
        node_auth=False,  # TLS alone here; node keys: test_supernode_auth.py
        user_auth=False,  # users: tests/superlink/test_accounts.py
    )


def test_dev_certificates_are_a_ca_and_a_server_cert_for_the_hostnames(certs):
    from cryptography import x509

    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(certs.server_cert.read_bytes())
    assert server.issuer == ca.subject != server.subject
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "superlink.test" in sans.get_values_for_type(x509.DNSName)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert certs.server_key.stat().st_mode & 0o077 == 0
    with pytest.raises(ConfigError, match="exist already"):
        create_dev_certificates(certs.ca_cert.parent)


def test_a_run_completes_over_tls(certs, start_node, make_app):
    link = _tls_link(certs)
    try:
        node = start_node(link.addresses["fleet"], insecure=False, root_certificates=certs.ca_cert)
        assert node.wait_registered(10)
        with ControlClient(link.addresses["control"], root_certificates=certs.ca_cert) as c:
            run, results, log = run_and_wait(c, make_app())
        assert run.sub_status == "completed", log
        assert list(results[0]["ok"]) == [str(node.node_id)]
    finally:
        link.stop(grace=1.0)


def test_clients_without_tls_or_trusting_another_ca_are_refused(certs, tmp_path):
    other = create_dev_certificates(tmp_path / "other")
    link = _tls_link(certs)
    try:
        address = link.addresses["control"]
        plain = ControlClient(address, timeout_s=3)
        with plain, pytest.raises(TransportError, match="cannot reach"):
            plain.list_runs()
        wrong = ControlClient(address, root_certificates=other.ca_cert, timeout_s=3)
        with wrong, pytest.raises(TransportError, match=r"(?i)certificate.verify.failed"):
            wrong.list_runs()
        with ControlClient(address, root_certificates=certs.ca_cert) as good:
            assert good.list_runs()[0] == []
    finally:
        link.stop(grace=1.0)


def test_mutual_tls_refuses_a_supernode_without_a_client_certificate(certs, start_node, tmp_path):
    link = _tls_link(certs, mutual=True)
    try:
        fleet = link.addresses["fleet"]
        anonymous = start_node(fleet, insecure=False, root_certificates=certs.ca_cert)
        assert not anonymous.wait_registered(1.5)
        with ControlClient(link.addresses["control"], root_certificates=certs.ca_cert) as c:
            assert c.list_nodes() == []
        node = start_node(
            fleet,
            insecure=False,
            root_certificates=certs.ca_cert,
            ssl_certfile=certs.client_cert,
            ssl_keyfile=certs.client_key,
        )
        assert node.wait_registered(10)
        assert not anonymous.wait_registered(0.1)
    finally:
        link.stop(grace=1.0)


def test_tls_config_is_checked(certs, tmp_path):
    with pytest.raises(ConfigError, match="--ssl-certfile and --ssl-keyfile"):
        SuperLinkConfig(insecure=False)
    with pytest.raises(ConfigError, match="--insecure and TLS"):
        SuperLinkConfig(ssl_certfile=certs.server_cert, ssl_keyfile=certs.server_key)
    with pytest.raises(ConfigError, match="loopback"):
        SuperLinkConfig(
            insecure=False,
            ssl_certfile=certs.server_cert,
            ssl_keyfile=certs.server_key,
            serverappio_address="0.0.0.0:9091",
        )
    with pytest.raises(ConfigError, match="--root-certificates"):
        SuperNodeConfig(superlink="127.0.0.1:9092", insecure=False)
    with pytest.raises(ConfigError, match="both --ssl-certfile"):
        SuperNodeConfig(
            superlink="127.0.0.1:9092",
            insecure=False,
            root_certificates=certs.ca_cert,
            ssl_certfile=certs.client_cert,
        )
    with pytest.raises(ConfigError, match="cannot read the TLS certificate"):
        start_superlink(
            insecure=False, ssl_certfile=tmp_path / "missing.pem", ssl_keyfile=certs.server_key
        )
