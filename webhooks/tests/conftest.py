import pytest

# A real worker's fixtures (webhooks/tests/test_workers.py): its process, broker and mail server.
from emails.tests.conftest import smtp  # noqa: F401
from emails.tests.test_delivery_real import start_worker, worker_broker  # noqa: F401
from webhooks import services
from webhooks.receiver import Receiver


@pytest.fixture
def loopback(settings):
    """Endpoints may be http://127.0.0.1 (where the tests' receivers listen)."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    settings.WEBHOOK_TIMEOUT = 5


@pytest.fixture
def endpoint_for(user, loopback):
    """make(url, event_types=["*"], owner=user) -> (endpoint, secret)."""

    def make(url: str, event_types=("*",), owner=None):
        return services.create_endpoint(
            owner or user, url=url, event_types=list(event_types), actor=owner or user
        )

    return make


@pytest.fixture
def receiver():
    """A Standard Webhooks receiver on loopback; its secret is set once its endpoint exists."""
    with Receiver() as running:
        yield running


@pytest.fixture
def endpoint(endpoint_for, receiver):
    """An endpoint of `user`'s for every event, on `receiver`, which checks its secret."""
    endpoint, secret = endpoint_for(receiver.url)
    receiver.secret = secret
    return endpoint


@pytest.fixture
def localhost_certificate(tmp_path):
    """(certificate path, key path): a self-signed certificate for `localhost`."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "localhost.pem", tmp_path / "localhost.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
