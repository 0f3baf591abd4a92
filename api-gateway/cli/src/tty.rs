//! The local terminal: whether stdin/stdout are terminals, its size, and raw mode for `run -t`/`exec -t`. Raw mode
//! is undone when its guard drops, and also by a panic hook and before `process::exit` (the release profile
//! aborts on panic, so a guard's Drop alone would not run).

use nix::sys::termios::{self, SetArg, Termios};
use std::io::IsTerminal;
use std::os::fd::BorrowedFd;
use std::sync::Mutex;

/// The terminal settings before raw mode, while raw mode is on.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Whether stdin is a terminal.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Whether stdout is a terminal.
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Whether stderr is a terminal.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// The terminal's size as (columns, rows), from stdout or else stdin; None when neither is a terminal.
pub fn size() -> Option<(u32, u32)> {
    [libc::STDOUT_FILENO, libc::STDIN_FILENO]
        .into_iter()
        .find_map(|fd| {
            let mut ws = libc::winsize {
                ws_row: 0,
                ws_col: 0,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass.
            let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
            (r == 0 && ws.ws_col > 0).then(|| (u32::from(ws.ws_col), u32::from(ws.ws_row)))
        })
}

/// Raw mode on stdin's terminal while it lives.
pub struct RawMode(());

impl RawMode {
    /// Puts stdin's terminal in raw mode (no echo, no line editing, no signals from keys: the container's terminal
    /// does those).
    pub fn enable() -> std::io::Result<RawMode> {
        // SAFETY: fd 0 stays open for the life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) };
        let original = termios::tcgetattr(fd)?;
        let mut raw = original.clone();
        termios::cfmakeraw(&mut raw);
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(original);
        install_panic_hook();
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw)?;
        Ok(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Restores the terminal settings saved by [`RawMode::enable`], if raw mode is on.
pub fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(original) = saved {
        // SAFETY: fd 0 stays open for the life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) };
        let _ = termios::tcsetattr(fd, SetArg::TCSADRAIN, &original);
    }
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}
