//! PLACEHOLDER until the steering helper's module lands (not committed).
use std::io;
use std::os::fd::BorrowedFd;
#[derive(Debug)]
pub struct Steering;
impl Steering {
    pub fn load(_key: kracauer_core::steer::SteerKey) -> io::Result<Self> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "placeholder"))
    }
    pub fn attach(&self, _fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(())
    }
}
