//! The carrier keeper's `unsafe`: closing every descriptor it inherited but its standard
//! input, output and error (`close_range(2)`). Its TUN ioctls are the TUN module's
//! ([`crate::tun::syscalls`]). Every block says why it is sound.

#![allow(unsafe_code)]

/// Closes descriptors 3 and up. Called first thing in the keeper, a process just started
/// from the daemon's binary that has opened nothing of its own yet: a descriptor the
/// daemon did not mark close-on-exec (an inherited instance lock, a handover socket)
/// must not live on in a process that outlives the daemon. An old kernel without
/// `close_range` (before 5.9) leaves them, logged.
pub fn close_inherited() {
    // SAFETY: close_range takes three integers and touches no memory of ours. No object
    // in this process owns a descriptor of 3 or more at this point (the keeper has opened
    // none yet; the standard library keeps none open), so none is closed under an owner.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc < 0 {
        tracing::debug!(
            "carrier keeper: close_range: {}",
            std::io::Error::last_os_error()
        );
    }
}
