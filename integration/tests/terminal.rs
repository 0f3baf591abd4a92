//! runtime-spec config.md#process ("terminal", "consoleSize") and runc's `--console-socket` contract, by which
//! containerd and conmon receive the pty master of a container with `terminal: true`.

use polis_integration::*;

fn tty_container(rt: &Runtime, b: &mut Bundle) -> (Value, String) {
    b.set("/process/terminal", json!(true));
    let console = ConsoleSocket::new(&rt.scratch());
    let c = rt.container();
    c.create_with(b, &["--console-socket", console.path.to_str().unwrap()])
        .ok();
    c.start().ok();
    c.wait_stopped();
    let text = console.output();
    let v = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .unwrap_or_else(|| panic!("no JSON on the terminal: {text:?}"));
    (v, text)
}

conformance_test!(
    /// config.md#process: "terminal (bool, OPTIONAL) specifies whether a terminal is attached to the process":
    /// with true, stdin, stdout and stderr are the terminal, and its output reaches the pty master sent over
    /// `--console-socket`.
    terminal_true_attaches_pty,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["tty"]);
        let (v, _) = tty_container(rt, &mut b);
        assert_eq!(v["tty"], json!([true, true, true]), "{v}");
    }
);

conformance_test!(
    /// config.md#process: "consoleSize (object, OPTIONAL) specifies the console size in characters of the
    /// terminal", "height (uint, REQUIRED)", "width (uint, REQUIRED)".
    console_size,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/consoleSize", json!({"height": 33, "width": 111}));
        b.probe(&["tty"]);
        let (v, _) = tty_container(rt, &mut b);
        assert_eq!(v["winsize"], json!([33, 111]), "{v}");
    }
);

conformance_test!(
    /// config.md#process: a terminal is a real tty: output newlines are translated to CRLF by the line discipline.
    terminal_line_discipline,
    |rt| {
        let mut b = Bundle::new();
        b.sh("echo first; echo second");
        b.set("/process/terminal", json!(true));
        let console = ConsoleSocket::new(&rt.scratch());
        let c = rt.container();
        c.create_with(&b, &["--console-socket", console.path.to_str().unwrap()]).ok();
        c.start().ok();
        c.wait_stopped();
        assert_eq!(console.output(), "first\r\nsecond\r\n");
    }
);

conformance_test!(
    /// runc contract: `terminal: true` without `--console-socket` is an error (the runtime has nowhere to send the
    /// pty master), and nothing is left behind.
    terminal_without_console_socket_fails,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/terminal", json!(true));
        let c = rt.container();
        let out = c.create(&b);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("console");
        }
        c.assert_gone();
    }
);

conformance_test!(
    /// runc contract: `--console-socket` with `terminal: false` is an error rather than a silently ignored flag.
    console_socket_without_terminal_fails,
    |rt| {
        let b = Bundle::new();
        let console_path = rt.scratch().join("unused.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&console_path).unwrap();
        let c = rt.container();
        let out = c.create_with(&b, &["--console-socket", console_path.to_str().unwrap()]);
        out.fails();
        c.assert_gone();
    }
);

conformance_test!(
    /// runc contract (containerd's exec with a tty): `exec --tty --detach --console-socket S` gives the exec'd
    /// process a terminal of its own.
    exec_tty,
    |rt| {
        let mut b = Bundle::new();
        b.probe(&["sleep", "60"]);
        let c = rt.container();
        c.create_running(&b);
        let console = ConsoleSocket::new(&rt.scratch());
        c.exec_with(
            &["--tty", "--detach", "--console-socket", console.path.to_str().unwrap()],
            &["/bin/polis-probe", "tty"],
        )
        .ok();
        let text = console.output();
        let v = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .unwrap_or_else(|| panic!("no JSON on the terminal: {text:?}"));
        assert_eq!(v["tty"], json!([true, true, true]), "{v}");
    }
);

/// runc's `run` allocates and proxies a terminal itself when `terminal` is true and no `--console-socket` is given.
/// polis-runc does not yet: its foreground `run` must say so and fail, leaving nothing behind, rather than run the
/// process without the terminal it asked for (a setting is never silently ignored).
#[test]
fn foreground_run_with_terminal_is_refused_by_polis() {
    let Some(rt) = Runtime::polis("run-terminal-without-console-socket") else {
        return;
    };
    let mut b = Bundle::new();
    b.set("/process/terminal", json!(true));
    b.args(&["/bin/true"]);
    let c = rt.container();
    let out = c.run(&b);
    out.fails();
    out.stderr_mentions("--console-socket");
    c.assert_gone();
    rt.assert_no_state();
}
