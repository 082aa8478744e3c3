"""Ordering the certificates that come with a leaf into its path towards the root.

Responsibility: decide, by signatures and not by names alone, which certificates of a bundle
lie on the leaf's path, put them leaf-ward first, and drop the root. It must not parse files,
check keys or validity windows (``labpki.credential`` does that) and it never trusts anything:
a path here is what a peer will *send*, not proof that anyone should accept it.

Theory of operation: from the leaf, repeatedly pick the remaining certificate whose key
verifies the current one's signature (``issued_by``), until none does or a self-signed one
(the root) is reached. The root stops the walk and is left out, because the other side already
holds it and a peer that sends its own root only invites a careless verifier to trust it.
Every certificate on the path must be a CA (RFC 5280 4.2.1.9, basicConstraints CA:TRUE), and
any other non-root certificate left over is an error rather than silently sent along.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from labpki.errors import PkiError

#: Most extra certificates a bundle may carry (leaf excluded).
MAX_CHAIN: Final = 8


def is_self_signed(cert: x509.Certificate) -> bool:
    """True when the certificate names itself as issuer and its own key signed it."""
    return cert.subject == cert.issuer and issued_by(cert, cert)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` signed ``cert`` directly (signature checked, not just names)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def order_chain(
    leaf: x509.Certificate, extra: Sequence[x509.Certificate], source: str
) -> tuple[x509.Certificate, ...]:
    """``extra`` as the path from ``leaf`` up, leaf-ward first, without the root.

    ``PkiError`` naming ``source`` for more than ``MAX_CHAIN`` certificates, a path certificate
    that is not a CA, or one that is not on the path at all (self-signed strays are dropped).
    """
    if len(extra) > MAX_CHAIN:
        raise PkiError(f"{source}: {len(extra)} CA certificates; at most {MAX_CHAIN} accepted")
    remaining = [cert for cert in extra if cert != leaf]
    chain: list[x509.Certificate] = []
    current = leaf
    while not is_self_signed(current):
        parent = next((c for c in remaining if issued_by(current, c)), None)
        if parent is None:
            break
        remaining.remove(parent)
        if is_self_signed(parent):
            break  # the root: the peer has it already, nobody sends it
        _check_is_ca(parent, source)
        chain.append(parent)
        current = parent
    strays = [cert for cert in remaining if not is_self_signed(cert)]
    if strays:
        raise PkiError(
            f"{source}: certificate {strays[0].subject.rfc4514_string()} is not in the chain of "
            f"{leaf.subject.rfc4514_string()} (no certificate on that path was signed by it)"
        )
    return tuple(chain)


def _check_is_ca(cert: x509.Certificate, source: str) -> None:
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise PkiError(
            f"{source}: chain certificate {cert.subject.rfc4514_string()} is not a CA "
            "(basicConstraints CA:TRUE missing)"
        )
