//! `docker run -it` and `docker exec -it` under a real terminal: util-linux's `script` runs the docker CLI on a pty
//! of its own, so the CLI puts that terminal in raw mode and asks polisd for a tty, as it does when a person types.

use super::{assert_interactive_shell, assert_nothing_left, run_detached};
use polis_integration::Output;
use polis_integration::polisd::{IMAGE, Polisd};
use std::process::Command;
use std::time::Duration;

/// `docker ARGS` on a pty (`script -qec`), with `typed` as the keystrokes; the CLI's output and exit code.
fn docker_on_a_pty(d: &Polisd, args: &[&str], typed: &[u8]) -> Output {
    let docker = d.docker_command(args);
    let mut line = shell_quote(docker.get_program().to_str().unwrap());
    for a in docker.get_args() {
        line.push(' ');
        line.push_str(&shell_quote(a.to_str().unwrap()));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"]);
    for (k, v) in docker.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    d.spawn_with_input(cmd, Some(typed))
        .wait(Duration::from_secs(60))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `docker run -it --rm IMAGE sh` (Engine API: create with Tty and OpenStdin, attach hijacked with stdin, start):
/// the shell gets a terminal, sees what is typed, and its exit code is the CLI's; nothing is left.
#[test]
fn run_it_gives_an_interactive_terminal() {
    let d = Polisd::start("pd-run-it");
    d.pull();
    let out = docker_on_a_pty(
        &d,
        &["run", "-it", "--rm", IMAGE, "sh"],
        b"tty; echo $((6*7)); exit 5\n",
    );
    assert_interactive_shell(&out, 5);
    assert_nothing_left(&d);
}

/// `docker exec -it C sh` (exec create with Tty and AttachStdin, exec start hijacked): the same in a running
/// container.
#[test]
fn exec_it_gives_an_interactive_terminal() {
    let d = Polisd::start("pd-exec-it");
    d.pull();
    run_detached(&d, &["--name", "ttyexec", IMAGE, "sleep", "300"]);
    let out = docker_on_a_pty(
        &d,
        &["exec", "-it", "ttyexec", "sh"],
        b"tty; echo $((6*7)); exit 3\n",
    );
    assert_interactive_shell(&out, 3);
    d.docker(&["rm", "-f", "ttyexec"]).ok();
    assert_nothing_left(&d);
}
