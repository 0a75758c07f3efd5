from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.core.management.base import BaseCommand

from audit import archive, archive_format


class Command(BaseCommand):
    help = (
        "Print the public key that verifies the audit archive (verify_audit_archive "
        "--public-key); with --new, a new AUDIT_ARCHIVE_SIGNING_KEY and its public key."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--new", action="store_true", help="Make a new signing key.")

    def handle(self, *args, new=False, **options):
        if new:
            key = Ed25519PrivateKey.generate()
            seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            self.stdout.write(f"AUDIT_ARCHIVE_SIGNING_KEY={archive_format.b64(seed)}")
            self.stdout.write(f"public key: {archive_format.public_key_text(key)}")
            return
        self.stdout.write(archive_format.public_key_text(archive.signing_key()))
