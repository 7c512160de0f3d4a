//! The name table: host name → backend (exact names, `*.` wildcards, a default).
