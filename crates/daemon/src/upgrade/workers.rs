//! A live upgrade to another number of workers (`[tun] workers`): the new process opens
//! more queues of the TUN device, or keeps fewer of those handed over, and divides the
//! handed-over flows among its workers as the kernel will steer them.
//!
//! The kernel steers a packet to the queue `value % queues`, where `value` is what the
//! steering program computes with the key drawn from the seed (the old and the new
//! process draw the same, [`SteerKey::from_seed`]); so each flow belongs to the worker
//! `queue_of(queue_hash(client, port, key), queues)`, and the new engines are restored
//! with [`Engine::restore_part`] on that rule. Packets that were queued under the old
//! division may reach a worker that does not hold their flow: for a few seconds the
//! engines drop those unanswered ([`Engine::settle_for`]) and the peers' retransmissions
//! reach the right worker. With one queue handed over there is no steering program yet:
//! it is attached here, last, with the same key.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use kracauer_core::engine::{Engine, EngineConfig};
use kracauer_core::route::RouteTable;
use kracauer_core::steer::{SteerKey, queue_hash, queue_of};
use kracauer_core::time::Time;

use super::syscalls;
use crate::steer::Steering;

/// How long the engines of a new division drop segments for no flow unanswered.
pub const SETTLE: Duration = Duration::from_secs(5);

/// The queues for `want` workers from those handed over: more opened beside them, or
/// the last ones let go (they detach once the old process has exited too). Where no
/// more can be opened (a device made with one queue), the handed-over ones stay, and
/// the log says why.
pub fn requeue(mut queues: Vec<OwnedFd>, want: usize) -> Vec<OwnedFd> {
    let handed = queues.len();
    if want < handed {
        queues.truncate(want.max(1));
        return queues;
    }
    let mut more = Vec::new();
    for _ in handed..want {
        let Some(first) = queues.first() else {
            return queues;
        };
        match syscalls::attach_queue(first.as_fd()) {
            Ok(q) => more.push(q),
            Err(e) => {
                tracing::warn!(
                    "upgrade: cannot open more queues of the TUN device ({e}); keeping the \
                     {handed} handed over ([tun] workers = {want} takes a restart)"
                );
                return queues;
            }
        }
    }
    queues.extend(more);
    queues
}

/// The engines for `configs` (one per queue) from the old process's `snapshots`: each
/// restored whole when the number of workers is the same, else each with the flows the
/// kernel will steer to its queue. Either way each settles for [`SETTLE`]: with the
/// same number of workers the steering can still change for a moment, when the new
/// process's carrier keeper attaches its queue (enabled until its second ioctl disables
/// it; both wait for the RTNL lock, which on a busy host can take hundreds of
/// milliseconds), and a segment steered to the worker without its flow meanwhile is
/// dropped, not reset (unsettled, a live upgrade under load with the fast path on reset
/// a few new connections so).
pub fn restore(
    configs: Vec<EngineConfig>,
    routes: &Arc<RouteTable>,
    snapshots: &[&[u8]],
    key: SteerKey,
) -> Result<Vec<Engine>, String> {
    let n = configs.len();
    let same = n == snapshots.len();
    let queues = u16::try_from(n).map_err(|_| format!("{n} workers"))?;
    configs
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            if same {
                let mut e = Engine::restore(c, routes.clone(), snapshots[i], Time::ZERO)
                    .map_err(|e| format!("worker {i}'s snapshot refused: {e}"))?;
                e.settle_for(Time::ZERO, SETTLE);
                return Ok(e);
            }
            let mine = |k: &kracauer_core::base::ClientKey| {
                usize::from(queue_of(queue_hash(k.client, k.client_port, key), queues)) == i
            };
            let mut e = Engine::restore_part(c, routes.clone(), snapshots, i, Time::ZERO, mine)
                .map_err(|e| format!("the snapshots refused for worker {i}: {e}"))?;
            e.settle_for(Time::ZERO, SETTLE);
            Ok(e)
        })
        .collect()
}

/// Attaches the steering program with `key` when the old process ran one queue (and so
/// no program) and this one runs more.
pub fn steer(handed: usize, queues: &[OwnedFd], key: SteerKey) -> Result<(), String> {
    if handed > 1 || queues.len() < 2 {
        return Ok(());
    }
    let steering = Steering::load(key).map_err(|e| format!("steering: {e}"))?;
    steering
        .self_check()
        .map_err(|e| format!("steering: {e}"))?;
    steering
        .attach(queues[0].as_fd())
        .map_err(|e| format!("steering: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kracauer_core::base::DropReason;
    use kracauer_core::engine::{Output, Verdict};

    /// An IPv4 TCP ACK from 198.51.100.2:40000 to 203.0.113.10:80 with 20 bytes of
    /// headroom before it; both checksums filled in.
    fn stray_ack() -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[3] = 40;
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[198, 51, 100, 2]);
        p[16..20].copy_from_slice(&[203, 0, 113, 10]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        p[24..28].copy_from_slice(&1000u32.to_be_bytes());
        p[28..32].copy_from_slice(&2000u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = 0x10;
        p[34..36].copy_from_slice(&1000u16.to_be_bytes());
        let sum = |words: &[u8], start: u32| -> u16 {
            let mut s = start;
            for w in words.chunks(2) {
                s += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            }
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            !(s as u16)
        };
        let ip = sum(&p[..20], 0);
        p[10..12].copy_from_slice(&ip.to_be_bytes());
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        let pre = pseudo
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        let tcp = sum(&p[20..40], pre);
        p[36..38].copy_from_slice(&tcp.to_be_bytes());
        let mut buf = vec![0u8; 20];
        buf.extend_from_slice(&p);
        buf
    }

    #[test]
    fn an_upgrade_to_the_same_workers_drops_a_segment_for_no_flow_without_a_reset() {
        let dir = std::env::temp_dir().join(format!("krc-settle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.toml");
        std::fs::write(
            &path,
            "prefix = \"2001:db8:64::/96\"\n\n[[listen]]\naddress = \"203.0.113.10\"\nhttp = [80]\n\n[[route]]\nhosts = [\"a.example\"]\nbackend = \"2001:db8:1::2\"\n",
        )
        .unwrap();
        let loaded = crate::routes::load(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let routes = Arc::new(loaded.routes);
        let seed = [3; 32];
        let configs = || crate::run::worker_configs(&loaded.config, seed, 2);
        let old: Vec<Engine> = configs()
            .into_iter()
            .map(|c| Engine::new(c, routes.clone()).unwrap())
            .collect();
        let snapshots: Vec<Vec<u8>> = old.iter().map(|e| e.snapshot(Time::ZERO)).collect();
        let refs: Vec<&[u8]> = snapshots.iter().map(Vec::as_slice).collect();
        let mut engines = restore(configs(), &routes, &refs, SteerKey::from_seed(&seed)).unwrap();
        let mut out = Output::default();
        let mut buf = stray_ack();
        let verdict = engines[0].handle_packet(Time::from_micros(1000), &mut buf, 20, &mut out);
        assert_eq!(verdict, Verdict::Dropped(DropReason::ClientNoFlowSettling));
        assert_eq!(out.packets().count(), 0, "no RST");
        // Once settled, the same segment is answered with a RST, as always.
        let later = Time::from_micros(SETTLE.as_micros() as u64 + 1_000_000);
        let mut buf = stray_ack();
        let verdict = engines[0].handle_packet(later, &mut buf, 20, &mut out);
        assert_eq!(verdict, Verdict::Dropped(DropReason::ClientNoFlow));
    }
}
