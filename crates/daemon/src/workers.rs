//! The data-plane workers as a group: one thread per TUN queue, started together,
//! stopped together, and, for a live upgrade ([`crate::upgrade`]), paused and resumed.
//!
//! A paused worker's thread has returned its [`DataPlane`] (queue, engine, clock): no
//! packet is read while it is parked, and the kernel keeps what arrives in the queue.
//! Resuming starts a thread on the same `DataPlane` again, so the engine's clock and
//! state go on as if nothing happened.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::runtime::DataPlane;

type Joined = (DataPlane, io::Result<()>);

/// The workers, running or parked.
#[derive(Debug)]
pub struct Workers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Joined>>,
    parked: Vec<DataPlane>,
    /// Errors of workers that ended on their own (a failed read), or panicked.
    errors: Vec<io::Error>,
    ended_tx: UnboundedSender<usize>,
    ended_rx: UnboundedReceiver<usize>,
}

/// Sends its worker's index when dropped: when the worker returns or unwinds.
struct Ended(UnboundedSender<usize>, usize);

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

impl Workers {
    /// Starts one thread per plane; `stop` is the flag each plane was made with. On an
    /// error the threads already started are stopped again and every plane is dropped.
    pub fn start(planes: Vec<DataPlane>, stop: Arc<AtomicBool>) -> io::Result<Self> {
        let mut w = Self::new_parked(planes, stop);
        if let Err(e) = w.resume() {
            w.finish();
            return Err(e);
        }
        Ok(w)
    }

    /// Workers for `planes`, parked: none runs until [`resume`](Self::resume).
    pub fn new_parked(planes: Vec<DataPlane>, stop: Arc<AtomicBool>) -> Self {
        let (ended_tx, ended_rx) = unbounded_channel();
        Self {
            stop,
            threads: Vec::new(),
            parked: planes,
            errors: Vec::new(),
            ended_tx,
            ended_rx,
        }
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.threads.len() + self.parked.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until a running worker ends on its own (its queue failed, or it panicked).
    pub async fn ended(&mut self) -> Option<usize> {
        self.ended_rx.recv().await
    }

    /// Stops every thread and parks its plane, in worker order. A worker that had failed
    /// or panicked is an error (its plane, if any, is parked all the same).
    pub fn pause(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut failed = None;
        for t in self.threads.drain(..) {
            match t.join() {
                Ok((plane, result)) => {
                    if let Err(e) = result {
                        failed.get_or_insert(io::Error::new(e.kind(), e.to_string()));
                        self.errors.push(e);
                    }
                    self.parked.push(plane);
                }
                Err(_) => {
                    let e = io::Error::other("a data-plane thread panicked");
                    failed.get_or_insert(io::Error::other(e.to_string()));
                    self.errors.push(e);
                }
            }
        }
        while self.ended_rx.try_recv().is_ok() {}
        failed.map_or(Ok(()), Err)
    }

    /// The parked planes (after [`pause`](Self::pause)), in worker order.
    pub fn parked(&self) -> &[DataPlane] {
        &self.parked
    }

    /// The parked planes, to change before they resume (a live upgrade's new queues).
    pub fn parked_mut(&mut self) -> &mut [DataPlane] {
        &mut self.parked
    }

    /// Starts a thread on every parked plane.
    pub fn resume(&mut self) -> io::Result<()> {
        self.stop.store(false, Ordering::Relaxed);
        let mut planes = std::mem::take(&mut self.parked).into_iter();
        for mut plane in planes.by_ref() {
            let ended = Ended(self.ended_tx.clone(), self.threads.len());
            let thread = std::thread::Builder::new()
                .name(format!("kracauer-w{}", self.threads.len()))
                .spawn(move || {
                    let _ended = ended;
                    let result = plane.run();
                    (plane, result)
                });
            match thread {
                Ok(t) => self.threads.push(t),
                Err(e) => {
                    // The plane moved into the closure that failed to start is gone with
                    // it; the others stay parked.
                    self.parked.extend(planes);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Stops every worker for good; returns their planes (for the access log's last
    /// lines) and every error a worker ended with.
    pub fn finish(mut self) -> (Vec<DataPlane>, Vec<io::Error>) {
        let _ = self.pause();
        (self.parked, self.errors)
    }
}
