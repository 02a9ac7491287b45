"""mqtts:// to a Mosquitto TLS listener whose certificate comes from a private CA (as a station's would)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from firmware import telemetry as tm
from firmware.telemetry import Telemetry, TlsOptions
from tests.telemetry.conftest import DEVICE, WAIT, Mosquitto, need_mosquitto


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey, *,
          ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:  # paho checks the host name: the server certificate names the address we connect to
        loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        builder = builder.add_extension(x509.SubjectAlternativeName([loopback]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pki(folder: Path) -> tuple[Path, Path, Path]:
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    files = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    files[0].write_bytes(_cert("Liuhen test CA", ca_key, "Liuhen test CA", ca_key, ca=True)
                         .public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(_cert("127.0.0.1", server_key, "Liuhen test CA", ca_key, ca=False)
                         .public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return files


def test_mqtts_with_a_private_ca(tmp_path: Path) -> None:
    need_mosquitto()
    ca, cert, key = _pki(tmp_path)
    broker = Mosquitto(tmp_path, f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    broker.start()
    t = Telemetry(DEVICE, f"mqtts://127.0.0.1:{broker.port}", tmp_path / "outbox", tls=TlsOptions(ca_file=ca),
                  reconnect_delay=(0.05, 0.2))
    try:
        t.start()
        t.publish_event(tm.MARKER)
        assert t.wait_connected(WAIT)
        assert t.flush(WAIT)  # the broker acknowledged it over TLS
    finally:
        t.close(timeout=0.5)
        broker.stop()
