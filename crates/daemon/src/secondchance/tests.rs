//! Second chance's wire format, answer counting, and two "instances" on loopback: a
//! segment reaches the peer worker that owns its flow, a "not held" comes back and makes
//! an orphan once every peer has said so, and strangers' datagrams are refused.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use kracauer_core::wire::build::TcpOptionsSpec;
use kracauer_core::wire::tcp::{SeqNumber, flags};

use super::receiver::{Answers, worker_of};
use super::*;

const START: usize = 40;

/// A client segment from `port`, at `START` of a buffer.
fn segment(port: u16) -> (Vec<u8>, usize) {
    let seg = kracauer_core::tcp::emit::Segment {
        src_port: port,
        dst_port: 80,
        seq: SeqNumber(5_000),
        ack: SeqNumber(9_000),
        flags: flags::ACK,
        window: 502,
        options: TcpOptionsSpec::default(),
        payload: b"bytes",
    };
    let mut buf = vec![0u8; START + seg.v4_len() + 64];
    let n = seg
        .emit_v4(
            Ipv4Addr::new(198, 51, 100, 2),
            Ipv4Addr::new(203, 0, 113, 10),
            1,
            &mut buf[START..],
        )
        .unwrap();
    (buf, START + n)
}

fn socket() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(receiver::POLL)).unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

/// Waits for a task on `link` (a bound on waiting: the task is what is checked).
fn task(link: &Link) -> (Task, usize, Vec<u8>) {
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; MAX_DATAGRAM + START];
    loop {
        if let Some((t, peer, n)) = link.recv(&mut buf, START) {
            return (t, peer, buf[START..n].to_vec());
        }
        assert!(Instant::now() < end, "no task came");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn empty(link: &Link) -> bool {
    let mut buf = vec![0u8; MAX_DATAGRAM + START];
    link.recv(&mut buf, START).is_none()
}

const KEY: SteerKey = SteerKey::from_bytes([1, 2, 3, 4, 5, 6, 7, 8]);

#[test]
fn a_header_is_read_back_and_a_bad_one_refused() {
    let mut d = vec![0u8; PREFIX_LEN + 40];
    write_header(&mut d, Kind::NotHeld);
    assert_eq!(read_header(&d), Ok(Kind::NotHeld));
    write_header(&mut d, Kind::Segment);
    assert_eq!(read_header(&d), Ok(Kind::Segment));
    assert_eq!(read_header(&d[..PREFIX_LEN + 10]), Err(WireError::Short));
    let mut bad = d.clone();
    bad[0] = b'X';
    assert_eq!(read_header(&bad), Err(WireError::Magic));
    let mut bad = d.clone();
    bad[4] = 2;
    assert_eq!(read_header(&bad), Err(WireError::Version(2)));
    let mut bad = d;
    bad[5] = 9;
    assert_eq!(read_header(&bad), Err(WireError::Kind(9)));
}

#[test]
fn a_segment_is_an_orphan_only_once_every_peer_has_answered() {
    let now = Instant::now();
    let mut a = Answers::new(3);
    let p = b"a segment".as_slice();
    assert!(!a.not_held(p, 0, now));
    assert!(
        !a.not_held(p, 0, now),
        "one peer answering twice is one answer"
    );
    assert!(!a.not_held(b"another segment", 1, now));
    assert!(!a.not_held(p, 2, now));
    assert!(a.not_held(p, 1, now));
    // The slot is free again: the next answers start afresh.
    assert!(!a.not_held(p, 1, now));
}

#[test]
fn answers_older_than_the_window_are_forgotten() {
    let now = Instant::now();
    let mut a = Answers::new(2);
    assert!(!a.not_held(b"x", 0, now));
    assert!(!a.not_held(b"x", 1, now + Duration::from_secs(2)));
    assert!(a.not_held(b"x", 0, now + Duration::from_secs(2)));
}

#[test]
fn a_passed_segment_reaches_the_peer_worker_that_owns_its_flow_and_a_not_held_comes_back_as_an_orphan()
 {
    let (sx, ax) = socket();
    let (sy, ay) = socket();
    let out = |me: SocketAddr, peer: SocketAddr| ScaleOut {
        listen: me,
        peers: vec![peer],
    };
    let workers = 4;
    let (cx, cy) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
    let (_rx, links_x) = start(&out(ax, ay), sx, workers, KEY, cx.clone()).unwrap();
    let (_ry, links_y) = start(&out(ay, ax), sy, workers, KEY, cy.clone()).unwrap();

    for port in [40_000, 40_001, 40_002, 40_003, 40_004, 40_005] {
        let (mut buf, end) = segment(port);
        let packet = buf[START..end].to_vec();
        let owner = worker_of(&packet, KEY, workers);
        // Instance X's worker 0 does not hold it: to the peer.
        links_x[0].pass_on(&mut buf[..end], START, false);
        let (t, peer, got) = task(&links_y[owner]);
        assert_eq!((t, peer), (Task::Segment, 0));
        assert_eq!(got, packet, "the packet arrives as it left");
        assert!(
            links_y
                .iter()
                .enumerate()
                .all(|(i, l)| i == owner || empty(l)),
            "only the owner's inbox has it"
        );
        // Y does not hold it either: back to X, whose owning worker resets it.
        let mut back = vec![0u8; START + got.len()];
        back[START - offload::HEADER_LEN..START].copy_from_slice(&offload::PLAIN);
        back[START..].copy_from_slice(&got);
        links_y[owner].not_held(&mut back, START, peer);
        let (t, _, got) = task(&links_x[owner]);
        assert_eq!(t, Task::Orphan);
        assert_eq!(got, packet);
    }
    let get = Counters::get;
    assert_eq!((get(&cx.sent), get(&cy.received)), (6, 6));
    assert_eq!((get(&cy.not_held_sent), get(&cx.not_held_received)), (6, 6));
    assert_eq!(get(&cx.orphans), 6);
}

#[test]
fn datagrams_from_strangers_or_with_a_bad_header_are_refused() {
    let (sx, ax) = socket();
    let (sy, ay) = socket();
    let c = Arc::new(Counters::default());
    let config = ScaleOut {
        listen: ax,
        peers: vec![ay],
    };
    let (_r, links) = start(&config, sx, 1, KEY, c.clone()).unwrap();
    let (mut buf, end) = segment(40_000);
    write_header(&mut buf[START - PREFIX_LEN..], Kind::Segment);
    let datagram = &buf[START - PREFIX_LEN..end];
    // Not from the peer's address.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.send_to(datagram, ax).unwrap();
    // From the peer's address, but another version.
    let mut bad = datagram.to_vec();
    bad[4] = 7;
    sy.send_to(&bad, ax).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while Counters::get(&c.not_peer) + Counters::get(&c.bad_header) < 2 {
        assert!(Instant::now() < end, "the receiver saw nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        (Counters::get(&c.not_peer), Counters::get(&c.bad_header)),
        (1, 1)
    );
    assert!(empty(&links[0]));
    assert_eq!(Counters::get(&c.received), 0);
}
