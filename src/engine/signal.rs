//! How a host learns that events are waiting without polling in a loop: a
//! callback it registers, and a file descriptor it can sleep on.

use std::ffi::c_void;
use std::io;
use std::os::fd::RawFd;

use super::Owned;

/// A host function called when events become available.
pub struct Notify {
    /// The function, called with `data`.
    pub func: unsafe extern "C" fn(*mut c_void),
    /// Its userdata, freed when the callback is replaced or the manager freed.
    pub data: Owned,
}

impl Notify {
    pub(crate) fn call(&self) {
        // SAFETY: a host callback with the userdata it registered.
        unsafe { super::foreign::call_free(self.func, self.data.data()) }
    }
}

/// Host functions called around every task run, for profilers.
pub struct TaskHooks {
    /// Called on the worker just before the task function.
    pub on_start: Option<TaskHookFn>,
    /// Called on the worker just after the task function returned.
    pub on_end: Option<TaskHookFn>,
    /// Userdata of both hooks.
    pub data: Owned,
}

/// `(userdata, task_id, group_kind, group_value, worker_index)`.
pub type TaskHookFn = unsafe extern "C" fn(*mut c_void, u64, u32, u64, u32);

/// A descriptor readable exactly while it is raised: an eventfd on Linux, a
/// non-blocking pipe elsewhere.
pub(crate) struct EventFd {
    read: RawFd,
    write: RawFd,
}

impl EventFd {
    #[cfg(target_os = "linux")]
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EventFd { read: fd, write: fd })
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn new() -> io::Result<Self> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        for fd in fds {
            // SAFETY: descriptors we just created.
            unsafe {
                libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK);
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        Ok(EventFd { read: fds[0], write: fds[1] })
    }

    /// The descriptor to watch for readability.
    pub(crate) fn fd(&self) -> RawFd {
        self.read
    }

    /// Makes the descriptor readable (callers only raise a lowered one).
    pub(crate) fn raise(&self) {
        let one: u64 = 1;
        let len = if self.read == self.write { 8 } else { 1 };
        // SAFETY: writes from a local of at least `len` bytes.
        let _ = unsafe { libc::write(self.write, (&one as *const u64).cast(), len) };
    }

    /// Makes the descriptor unreadable again.
    pub(crate) fn clear(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads into a local buffer of the given size.
            let n = unsafe { libc::read(self.read, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 || self.read == self.write {
                break;
            }
        }
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: descriptors owned by this value, closed once.
        unsafe {
            libc::close(self.read);
            if self.write != self.read {
                libc::close(self.write);
            }
        }
    }
}

/// The state behind both mechanisms, kept under the manager's lock so that
/// it always matches "are there undelivered events".
#[derive(Default)]
pub(crate) struct Signal {
    /// True while undelivered events exist (as last synchronised).
    pub(crate) raised: bool,
    pub(crate) fd: Option<EventFd>,
    pub(crate) notify: Option<std::sync::Arc<Notify>>,
    /// The notify callback may fire (reset by every poll).
    pub(crate) armed: bool,
    /// A poll has something to do: deliver events, re-arm the notify
    /// callback or release the last poll's results. Read without the lock
    /// by [`super::Manager::poll`], so that a host polling an idle manager
    /// in a loop does not take the lock from the workers.
    pub(crate) gate: std::sync::Arc<super::lane::Padded<std::sync::atomic::AtomicBool>>,
}
