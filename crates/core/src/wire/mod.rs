//! Zero-copy views over IPv4, IPv6, TCP, UDP, ICMPv4 and ICMPv6 headers, and checksums.
