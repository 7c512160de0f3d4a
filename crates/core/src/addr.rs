//! Embedding client IPv4 addresses in the operator's IPv6 /96 prefix (RFC 6052 §2.2) and back.
