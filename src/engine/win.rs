//! The Windows functions btm calls itself (besides Rust's std), declared
//! here rather than through a crate for five functions: the event object
//! hosts sleep on (`signal::EventFd`), and whether the process is ending.

use std::ffi::c_void;

#[link(name = "kernel32")]
extern "system" {
    pub(crate) fn CreateEventW(
        attributes: *mut c_void,
        manual_reset: i32,
        initial_state: i32,
        name: *const u16,
    ) -> *mut c_void;
    pub(crate) fn SetEvent(event: *mut c_void) -> i32;
    pub(crate) fn ResetEvent(event: *mut c_void) -> i32;
    pub(crate) fn CloseHandle(handle: *mut c_void) -> i32;
}

#[link(name = "ntdll")]
extern "system" {
    fn RtlDllShutdownInProgress() -> u8;
}

/// True while the process is ending: `ExitProcess` has ended every other
/// thread (btm's workers among them) and runs the DLLs' detach code.
pub(crate) fn process_is_exiting() -> bool {
    // SAFETY: reads a flag of the process; no arguments.
    unsafe { RtlDllShutdownInProgress() != 0 }
}
