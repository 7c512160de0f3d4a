//! Stateless IPv4 <-> IPv6 header translation and ICMP error translation (RFC 7915).
