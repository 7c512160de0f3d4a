//! Connections caught by an upgrade in each phase of their life end as they would have
//! without it.
