#!/usr/bin/env bash
# Re-records the ClientHello vectors in this directory (see README.md). Run by hand:
#   crates/core/testdata/record.sh [NAME...]     (default: all)
# Needs openssl, curl, chromium, ngtcp2-client (apt-get install -y chromium
# ngtcp2-client) and a Rust toolchain.
# Everything stays on 127.0.0.1. Each vector: the recorder listens on a free port,
# one client connects and sends its hello, the recorder saves the hello records.
set -euo pipefail
cd "$(dirname "$0")"

cargo build --release --quiet --manifest-path recorder/Cargo.toml
REC=recorder/target/release/kracauer-hello-recorder
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# record NAME CLIENT-COMMAND... ; "PORT" in the command is replaced by the port.
record() {
  local name=$1; shift
  rm -f "$WORK/port"
  "$REC" listen --out "$name.bin" --port-file "$WORK/port" &
  local listener=$!
  for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
  local port; port=$(cat "$WORK/port")
  local args=("${@//PORT/$port}")
  timeout 60 "${args[@]}" </dev/null >"$WORK/$name.client.log" 2>&1 || true
  if ! wait "$listener"; then
    echo "record.sh: $name: no hello recorded; client said:" >&2
    tail -5 "$WORK/$name.client.log" >&2
    return 1
  fi
}

# record_udp NAME CLIENT-COMMAND... : the same for QUIC; the recorder keeps the datagrams
# of the client's first flight (quic_*.bin, see README.md).
record_udp() {
  local name=$1; shift
  rm -f "$WORK/port"
  "$REC" udp-listen --out "$name.bin" --port-file "$WORK/port" &
  local listener=$!
  for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
  local port; port=$(cat "$WORK/port")
  local args=("${@//PORT/$port}")
  timeout 20 "${args[@]}" </dev/null >"$WORK/$name.client.log" 2>&1 || true
  if ! wait "$listener"; then
    echo "record.sh: $name: no datagram recorded; client said:" >&2
    tail -5 "$WORK/$name.client.log" >&2
    return 1
  fi
}

# sel NAME: whether NAME was asked for (all when no names were given).
SELECTED=("$@")
sel() { [ ${#SELECTED[@]} -eq 0 ] || printf '%s\n' "${SELECTED[@]}" | grep -qx "$1"; }

sel openssl_s_client && record openssl_s_client \
  openssl s_client -connect 127.0.0.1:PORT -servername a.example
sel openssl_tls12 && record openssl_tls12 \
  openssl s_client -tls1_2 -connect 127.0.0.1:PORT -servername a.example
sel openssl_no_sni && record openssl_no_sni \
  openssl s_client -connect 127.0.0.1:PORT -noservername
sel curl && record curl \
  curl -sk --max-time 20 --resolve a.example:PORT:127.0.0.1 https://a.example:PORT/
sel rustls_pq && record rustls_pq \
  "$REC" client --port PORT --servername a.example --alpn h2,http/1.1
if sel chromium; then
  profile=$(mktemp -d)
  record chromium \
    chromium --headless --no-sandbox --disable-gpu --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$profile" --host-resolver-rules="MAP a.example 127.0.0.1" \
      --timeout=10000 https://a.example:PORT/
  rm -rf "$profile"
fi
sel quic_quinn && record_udp quic_quinn \
  "$REC" quic-client --port PORT --servername a.example --alpn h3
sel quic_ngtcp2 && record_udp quic_ngtcp2 \
  gtlsclient --quiet --sni=a.example --handshake-timeout=2s --exit-on-all-streams-close \
    127.0.0.1 PORT
sel quic_ngtcp2_v2_draft && record_udp quic_ngtcp2_v2_draft \
  gtlsclient --quiet --sni=a.example --handshake-timeout=2s --exit-on-all-streams-close \
    --version=0x6b3343cf 127.0.0.1 PORT
if sel quic_chromium; then
  profile=$(mktemp -d)
  record_udp quic_chromium \
    chromium --headless --no-sandbox --disable-gpu --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$profile" --host-resolver-rules="MAP a.example 127.0.0.1" \
      --enable-quic --origin-to-force-quic-on=a.example:PORT \
      --timeout=5000 https://a.example:PORT/
  rm -rf "$profile"
fi
ls -l ./*.bin
