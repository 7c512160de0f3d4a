//! Flows that never splice: a backend that does not answer or refuses, a client that
//! stalls, a name with no route.
