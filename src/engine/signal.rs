//! How a host learns that events are waiting without polling in a loop: a
//! callback it registers, and a file descriptor (Windows: an event object)
//! it can sleep on.

use std::ffi::c_void;
use std::io;

#[cfg(windows)]
use super::win;
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

/// What the host sleeps on, as the C API hands it out: a file descriptor
/// on Unix (`btm_get_event_fd`), an event object's `HANDLE` on Windows
/// (`btm_get_event_handle`).
#[cfg(unix)]
pub type RawSignal = std::os::fd::RawFd;
/// What the host sleeps on, as the C API hands it out: a file descriptor
/// on Unix (`btm_get_event_fd`), an event object's `HANDLE` on Windows
/// (`btm_get_event_handle`).
#[cfg(windows)]
pub type RawSignal = *mut c_void;

/// A descriptor readable exactly while it is raised: an eventfd on Linux, a
/// non-blocking pipe on other Unix systems, a manual-reset event object
/// (signalled while raised) on Windows.
pub(crate) struct EventFd {
    #[cfg(unix)]
    read: std::os::fd::RawFd,
    #[cfg(unix)]
    write: std::os::fd::RawFd,
    #[cfg(windows)]
    event: *mut c_void,
}

// SAFETY: a Windows event handle may be used from any thread (the file
// descriptors of the Unix forms are plain integers). It lives in the
// manager's `Mutex<State>`, which needs no more than `Send`.
#[cfg(windows)]
unsafe impl Send for EventFd {}

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

    #[cfg(all(unix, not(target_os = "linux")))]
    pub(crate) fn new() -> io::Result<Self> {
        let mut fds = [0 as std::os::fd::RawFd; 2];
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

    #[cfg(windows)]
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: no security attributes (not inherited by child
        // processes), manual reset, initially not signalled, no name.
        let event = unsafe { win::CreateEventW(std::ptr::null_mut(), 1, 0, std::ptr::null()) };
        if event.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(EventFd { event })
    }

    /// The descriptor (Windows: the event's handle) to watch.
    pub(crate) fn raw(&self) -> RawSignal {
        #[cfg(unix)]
        return self.read;
        #[cfg(windows)]
        return self.event;
    }

    /// Makes the descriptor readable (callers only raise a lowered one).
    #[cfg(unix)]
    pub(crate) fn raise(&self) {
        let one: u64 = 1;
        let len = if self.read == self.write { 8 } else { 1 };
        // SAFETY: writes from a local of at least `len` bytes.
        let _ = unsafe { libc::write(self.write, (&one as *const u64).cast(), len) };
    }

    /// Makes the descriptor unreadable again.
    #[cfg(unix)]
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

    /// Signals the event. (It fails only if the host closed the handle,
    /// which the C API forbids.)
    #[cfg(windows)]
    pub(crate) fn raise(&self) {
        // SAFETY: a handle this value owns.
        let ok = unsafe { win::SetEvent(self.event) };
        debug_assert!(ok != 0, "SetEvent: {}", io::Error::last_os_error());
    }

    /// Resets the event (as `raise`, it fails only on a closed handle).
    #[cfg(windows)]
    pub(crate) fn clear(&self) {
        // SAFETY: a handle this value owns.
        let ok = unsafe { win::ResetEvent(self.event) };
        debug_assert!(ok != 0, "ResetEvent: {}", io::Error::last_os_error());
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: descriptors owned by this value, closed once.
        #[cfg(unix)]
        unsafe {
            libc::close(self.read);
            if self.write != self.read {
                libc::close(self.write);
            }
        }
        // SAFETY: a handle owned by this value, closed once.
        #[cfg(windows)]
        unsafe {
            win::CloseHandle(self.event);
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
