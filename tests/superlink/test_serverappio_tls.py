"""ServerAppIO with TLS: the SuperLink's own ServerApp processes connect with TLS trusting a
given CA; plaintext clients, a wrong CA and addresses beyond loopback without TLS are refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from glade_testing import app_files, start_superlink, write_files

from glade.bundle import build_bundle
from glade.errors import ConfigError
from glade.superlink import SuperLinkConfig
from glade.superlink.client import ControlClient
from glade.transport.grpc_options import channel
from glade.transport.tls import DevCertificates, certificate_covers, create_dev_certificates
from glade.transport.v1 import serverappio_pb2 as spb
from glade.transport.v1 import serverappio_pb2_grpc

# reaching ServerAppIO is all this ServerApp needs: a run that completes got through
SERVER = """
from glade import ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    print("NODES", grid.get_node_ids(), flush=True)
"""
CLIENT = "from glade import ClientApp\napp = ClientApp()\n"


@pytest.fixture
def certs(tmp_path: Path) -> DevCertificates:
    return create_dev_certificates(tmp_path / "certs", hostnames=["superlink.test"])


def _tls(certs: DevCertificates, **options):
    """Config options of a TLS SuperLink; the auth layers (tested elsewhere) are off."""
    return {
        "insecure": False,
        "ssl_certfile": certs.server_cert,
        "ssl_keyfile": certs.server_key,
        "user_auth": False,
        "node_auth": False,
        **options,
    }


def _run(link, certs: DevCertificates, tmp_path: Path):
    project = write_files(
        tmp_path / "app", app_files("tlsapp", server=SERVER, client=CLIENT, config={})
    )
    bundle = build_bundle(project)
    with ControlClient(link.addresses["control"], root_certificates=certs.ca_cert) as control:
        control.upload_bundle(bundle)
        run_id = control.start_run(bundle.bundle_id, run_config={})
        log = "".join(text for _, text in control.stream_logs(run_id, follow=True, timeout_s=60))
        run, _ = control.get_run(run_id)
    return run, log


def test_a_run_completes_with_serverappio_on_tls_and_plaintext_is_refused(certs, tmp_path):
    link = start_superlink(**_tls(certs, serverappio_root_certificates=certs.ca_cert))
    try:
        run, log = _run(link, certs, tmp_path)
        assert run.sub_status == "completed", log
        assert "NODES []" in log
        # a client without TLS gets no answer from ServerAppIO
        with channel(link.addresses["serverappio"]) as chan:
            stub = serverappio_pb2_grpc.ServerAppIoStub(chan)
            with pytest.raises(grpc.RpcError) as info:
                stub.GetNodes(spb.RunTokenRequest(run_id=run.run_id, token="x"), timeout=3)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        link.stop(grace=1.0)


def test_serverapps_trusting_another_ca_cannot_connect(certs, tmp_path):
    other = create_dev_certificates(tmp_path / "other")
    link = start_superlink(**_tls(certs, serverappio_root_certificates=other.ca_cert))
    try:
        run, log = _run(link, certs, tmp_path)
        assert run.sub_status == "failed"
        assert "cannot reach the SuperLink" in log, log
    finally:
        link.stop(grace=1.0)


def test_serverappio_beyond_loopback_needs_tls_and_a_ca(certs):
    with pytest.raises(ConfigError, match=r"not a loopback address: without TLS"):
        SuperLinkConfig(serverappio_address="0.0.0.0:9091")
    with pytest.raises(ConfigError, match="--serverappio-root-certificates"):
        SuperLinkConfig(**_tls(certs, serverappio_address="0.0.0.0:9091"))
    with pytest.raises(ConfigError, match="--insecure and TLS"):
        SuperLinkConfig(serverappio_root_certificates=certs.ca_cert)
    # beyond loopback: TLS, trusting --serverappio-root-certificates or else --ssl-ca-certfile
    beyond = SuperLinkConfig(
        **_tls(certs, serverappio_address="0.0.0.0:9091", ssl_ca_certfile=certs.ca_cert)
    )
    assert beyond.serverappio_ca == certs.ca_cert
    other = beyond.with_options(serverappio_root_certificates=Path("other.pem"))
    assert other.serverappio_ca == Path("other.pem")
    # on loopback ServerAppIO stays plaintext unless a CA is given for it
    assert SuperLinkConfig(**_tls(certs)).serverappio_ca is None
    assert SuperLinkConfig(**_tls(certs, ssl_ca_certfile=certs.ca_cert)).serverappio_ca is None


def test_the_certificate_must_cover_where_serverapps_connect(certs):
    assert certificate_covers(certs.server_cert, "127.0.0.1")
    assert certificate_covers(certs.server_cert, "localhost")
    assert certificate_covers(certs.server_cert, "SuperLink.test")
    assert not certificate_covers(certs.server_cert, "other.test")
    assert not certificate_covers(certs.server_cert, "127.0.0.2")
    options = _tls(certs, serverappio_root_certificates=certs.ca_cert)
    with pytest.raises(ConfigError, match=r"not valid for '127\.0\.0\.2'.*--hostname"):
        start_superlink(**{**options, "serverappio_address": "127.0.0.2:0"})
