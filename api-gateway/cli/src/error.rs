//! What a command that fails returns: one line naming the problem and the exit code (1 for most commands; `run`
//! uses 125 when polis itself fails before the container runs, as docker does).

use std::fmt::Display;

/// A failed command: the message printed as one line on stderr, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

/// What commands return.
pub type Result<T> = std::result::Result<T, Failure>;

impl Failure {
    /// A failure with exit code 1.
    pub fn new(message: impl Display) -> Failure {
        Failure::with_code(1, message)
    }

    /// A failure with the given exit code.
    pub fn with_code(code: i32, message: impl Display) -> Failure {
        Failure {
            code,
            message: one_line(&message.to_string()),
        }
    }

    /// The same failure with another exit code.
    pub fn code(mut self, code: i32) -> Failure {
        self.code = code;
        self
    }
}

impl From<polis_client::Error> for Failure {
    fn from(e: polis_client::Error) -> Failure {
        Failure::new(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::new(e)
    }
}

/// A message on one line: line breaks (a runtime's multi-line error) become "; ", trailing space trimmed.
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Prints a failure as docker does, `Error: MESSAGE`, on stderr.
pub fn print(message: &str) {
    eprintln!("Error: {message}");
}

/// Runs `f` for each name, printing each failure on its own line and going on with the next; the failures make
/// the command's exit code 1 (as `docker rm a b` does).
pub async fn each<F, Fut>(names: &[String], mut f: F) -> Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = false;
    for name in names {
        if let Err(e) = f(name.clone()).await {
            print(&e.message);
            failed = true;
        }
    }
    if failed {
        // Each failure is already printed: an empty message prints nothing more.
        Err(Failure {
            code: 1,
            message: String::new(),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line("a\n  b\n\n"), "a; b");
        assert_eq!(Failure::new("x\ny").message, "x; y");
        assert_eq!(Failure::with_code(125, "x").code, 125);
    }
}
