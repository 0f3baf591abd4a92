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

/// `run` of a `terminal: true` process on the caller's terminal of `rows` x `cols`, typing "ping": what the terminal
/// showed and the exit code.
fn run_on_own_terminal(
    rt: &Runtime,
    script: &str,
    rows: u16,
    cols: u16,
    resize: Option<Resize>,
) -> TerminalSession {
    let mut b = Bundle::new();
    b.set("/process/terminal", json!(true));
    b.sh(script);
    let c = rt.container();
    b.write_config(Some(&c.cgroups_path()));
    let mut cmd = rt.command(&["run", "--bundle"]);
    cmd.arg(b.path()).arg(&c.id);
    let session = run_on_terminal(cmd, rows, cols, "ping\n", resize);
    c.assert_gone();
    session
}

/// `exec --tty` of `script` into a running container, on the caller's terminal of `rows` x `cols`.
fn exec_on_own_terminal(rt: &Runtime, script: &str, rows: u16, cols: u16) -> TerminalSession {
    let mut b = Bundle::new();
    b.probe(&["sleep", "60"]);
    let c = rt.container();
    c.create_running(&b);
    let mut cmd = rt.command(&["exec", "--tty", &c.id, "sh", "-c", script]);
    cmd.current_dir(rt.scratch());
    run_on_terminal(cmd, rows, cols, "", None)
}

conformance_test!(
    /// runc contract: `run` without `--detach` and without `--console-socket` allocates the terminal of a
    /// `terminal: true` process itself and proxies it to its own stdin and stdout, as a person at a shell expects:
    /// the process has a tty, what is typed reaches it, and its exit code is returned.
    run_proxies_its_own_terminal,
    |rt| {
        let session = run_on_own_terminal(rt, "tty; read line; echo got:$line; exit 3", 40, 100, None);
        assert!(session.output.contains("/dev/pts/"), "{:?}", session.output);
        assert!(session.output.contains("got:ping"), "{:?}", session.output);
        assert_eq!(session.code, Some(3), "{:?}", session.output);
    }
);

conformance_test!(
    /// The proxied terminal has the caller's size from the start: a program that asks at once (`stty size`) gets
    /// it, not 0x0.
    run_terminal_has_the_callers_size,
    runc_lacks = "runc 1.1.5 sizes the terminal after the process has started; `stty size` at once can see 0x0",
    |rt| {
        let session = run_on_own_terminal(rt, "stty size", 40, 100, None);
        assert!(session.output.contains("40 100"), "{:?}", session.output);
        assert_eq!(session.code, Some(0), "{:?}", session.output);
    }
);

conformance_test!(
    /// The proxied terminal follows the caller's: when the caller's terminal is resized (SIGWINCH), the process's
    /// terminal takes the new size, as with runc.
    run_terminal_follows_resizes,
    |rt| {
        let resize = Resize { after_output: "30 90", rows: 33, cols: 111 };
        // runc 1.1.5 sizes the terminal just after the process starts, so the script first waits (up to 2 s) for
        // the initial size; the point here is the resize, which the harness makes once it reads "30 90": the script
        // then waits (up to 10 s) for the size to change and prints it again.
        let script = "i=0; while [ \"$(stty size 2>/dev/null)\" != '30 90' ] && [ $i -lt 40 ]; do \
                      sleep 0.05; i=$((i+1)); done; stty size; \
                      i=0; while [ \"$(stty size 2>/dev/null)\" = '30 90' ] && [ $i -lt 200 ]; do \
                      sleep 0.05; i=$((i+1)); done; stty size";
        let session = run_on_own_terminal(rt, script, 30, 90, Some(resize));
        let sizes: Vec<&str> = session.output.lines().map(str::trim).filter(|l| l.contains(' ')).collect();
        assert_eq!(sizes.last(), Some(&"33 111"), "{:?}", session.output);
        assert_eq!(session.code, Some(0), "{:?}", session.output);
    }
);

conformance_test!(
    /// runc contract: `exec --tty` without `--detach` and `--console-socket` proxies the new process's terminal.
    exec_proxies_its_own_terminal,
    |rt| {
        let session = exec_on_own_terminal(rt, "tty; exit 4", 20, 70);
        assert!(session.output.contains("/dev/pts/"), "{:?}", session.output);
        assert_eq!(session.code, Some(4), "{:?}", session.output);
    }
);

conformance_test!(
    /// As for `run`: the exec'd process's terminal has the caller's size before the process runs.
    exec_terminal_has_the_callers_size,
    runc_lacks = "runc 1.1.5 sizes the terminal after the process has started; `stty size` at once can see 0x0",
    |rt| {
        let session = exec_on_own_terminal(rt, "stty size", 20, 70);
        assert!(session.output.contains("20 70"), "{:?}", session.output);
        assert_eq!(session.code, Some(0), "{:?}", session.output);
    }
);

conformance_test!(
    /// runc contract: `run --detach` of a `terminal: true` process needs `--console-socket` (the terminal has
    /// nowhere else to go); without one it fails and leaves nothing behind.
    detached_run_with_terminal_needs_console_socket,
    |rt| {
        let mut b = Bundle::new();
        b.set("/process/terminal", json!(true));
        b.args(&["/bin/true"]);
        let c = rt.container();
        let out = c.run_with(&b, &["--detach"]);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("--console-socket");
        }
        c.assert_gone();
    }
);
