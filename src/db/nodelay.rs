//! Turns off Nagle's algorithm on the process's TCP sockets. sqlx 0.9.0 leaves it on (sqlx
//! issue #4335, fixed after that release): the last, small message of a COPY then waits for
//! the server's delayed acknowledgement, 40 ms on Linux, once per table. With hundreds of small
//! tables that is most of a run.

/// Sets TCP_NODELAY on every TCP socket of this process. Other sockets refuse it; that is
/// ignored, and so is a socket that closes meanwhile.
#[cfg(target_os = "linux")]
pub fn apply() {
    use std::os::fd::BorrowedFd;
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor was open a moment ago and is only borrowed for one
        // setsockopt call, never closed or kept. Should another thread close it in between,
        // the call fails (EBADF) or reaches the socket that took the number, which TCP_NODELAY
        // does not harm.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = socket2::SockRef::from(&fd).set_tcp_nodelay(true);
    }
}

#[cfg(not(target_os = "linux"))]
pub fn apply() {}
