//! `polis run`: the image (pulled with progress when polisd does not have it), the container created from the
//! flags, attached before it starts (stdin with `-i`), started, its output streamed with our stdin, terminal size and
//! signals forwarded, and our exit code its exit code. `-d` prints the ID instead; `--rm` sets auto-remove and waits
//! for the removal. Failures before the container runs exit with 125, a command that cannot run with 126 or 127.

use crate::args::RunArgs;
use crate::connect::Target;
use crate::error::{Failure, Result};
use crate::progress::{self, Progress, Sink};
use crate::stdio::{self, End, Forward};
use crate::{parse, tty};
use polis_client::{Client, Error, proto};
use std::time::Duration;

/// docker's exit code when it fails itself, before the container runs.
const POLIS_FAILED: i32 = 125;

/// The flags as a container spec (with `--name`).
pub fn spec(args: &RunArgs) -> std::result::Result<proto::ContainerSpec, String> {
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for path in &args.env_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("read the env file {}: {e}", path.display()))?;
        env.extend(parse::env_file(path, &text, lookup)?);
    }
    for e in &args.env {
        env.extend(parse::env_var(e, lookup)?);
    }
    let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
    let mounts = args
        .volume
        .iter()
        .map(|v| parse::volume(v, &cwd))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let ports = args
        .publish
        .iter()
        .map(|p| parse::port(p))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let restart_policy = match &args.restart {
        Some(r) => Some(parse::restart_policy(r)?),
        None => None,
    };
    if args.rm
        && restart_policy
            .as_ref()
            .is_some_and(|r| r.kind != proto::RestartPolicyKind::No as i32)
    {
        return Err("conflicting options: --restart and --rm".into());
    }
    let resources = proto::Resources {
        memory_bytes: args
            .memory
            .as_deref()
            .map(parse::size)
            .transpose()?
            .unwrap_or(0),
        nano_cpus: args
            .cpus
            .as_deref()
            .map(parse::nano_cpus)
            .transpose()?
            .unwrap_or(0),
        ..Default::default()
    };
    Ok(proto::ContainerSpec {
        image: args.image.clone(),
        command: args.command.clone(),
        entrypoint: args.entrypoint.iter().cloned().collect(),
        env,
        working_dir: args.workdir.clone().unwrap_or_default(),
        user: args.user.clone().unwrap_or_default(),
        hostname: args.hostname.clone().unwrap_or_default(),
        labels: parse::key_values(&args.label)?,
        tty: args.tty,
        open_stdin: args.interactive,
        mounts,
        ports,
        network: args.network.clone().unwrap_or_default(),
        resources: Some(resources),
        restart_policy,
        auto_remove: args.rm,
        ..Default::default()
    })
}

/// Runs the command; its exit code.
pub async fn run(target: &Target, args: RunArgs) -> Result<i32> {
    let failed = |e: Failure| e.code(POLIS_FAILED);
    let spec = spec(&args).map_err(|m| Failure::with_code(POLIS_FAILED, m))?;
    let terminal = args.tty && args.interactive;
    if terminal && !tty::stdin_is_terminal() {
        return Err(Failure::new("the input device is not a TTY"));
    }
    let client = target.connect().await.map_err(failed)?;
    ensure_image(&client, &args.image).await.map_err(failed)?;
    let id = client
        .create_container(args.name.as_deref().unwrap_or(""), spec)
        .await
        .map_err(|e| failed(e.into()))?;

    if args.detach {
        if let Err(e) = client.start_container(&id).await {
            return Err(start_failed(&client, &id, args.rm, e).await);
        }
        println!("{id}");
        return Ok(0);
    }

    let attached = client
        .attach(proto::AttachStart {
            id: id.clone(),
            logs: false,
            stdin: args.interactive,
        })
        .await;
    let (input, output) = match attached {
        Ok(a) => a,
        Err(e) => {
            if args.rm {
                let _ = client.remove_container(&id, true).await;
            }
            return Err(failed(e.into()));
        }
    };
    // Raw mode before the container starts, so that what is typed meanwhile is neither echoed nor edited here.
    let raw = match terminal.then(tty::RawMode::enable).transpose() {
        Ok(raw) => raw,
        Err(e) => {
            if args.rm {
                let _ = client.remove_container(&id, true).await;
            }
            return Err(failed(e.into()));
        }
    };
    if let Err(e) = client.start_container(&id).await {
        drop(raw);
        return Err(start_failed(&client, &id, args.rm, e).await);
    }
    let forward = Forward {
        stdin: args.interactive,
        tty: args.tty,
        signals_to: (!args.tty).then(|| (client.clone(), id.clone())),
    };
    let end = stdio::pump(input, output, forward).await;
    drop(raw);
    let code = match end {
        Ok(End::Exited(code)) => code as i32,
        Ok(End::Signalled(n)) => return Ok(128 + n),
        Ok(End::Closed) | Err(_) => match client.wait_container(&id).await {
            Ok(code) => code as i32,
            Err(e) => return Err(failed(e.into())),
        },
    };
    if args.rm {
        wait_removed(&client, &id).await;
    }
    Ok(code)
}

/// Pulls the image when polisd does not have it (progress on stderr, as docker shows it).
async fn ensure_image(client: &Client, image: &str) -> Result<()> {
    match client.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(Error::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    eprintln!("Unable to find image '{image}' locally");
    let pull = client.pull(image).await?;
    let progress = Progress::new(Sink::Stderr, tty::stderr_is_terminal());
    progress::follow(pull, Some(progress)).await?;
    Ok(())
}

/// A start that failed: the container is removed with `--rm` (it never ran, so polisd's auto-remove does not
/// apply), and the exit code says why, as docker's: 127 for a command not found, 126 for one that cannot be
/// executed (permission denied, a directory, not an executable file), else 125.
async fn start_failed(client: &Client, id: &str, rm: bool, e: Error) -> Failure {
    if rm {
        let _ = client.remove_container(id, true).await;
    }
    let message = e.to_string();
    let m = message.to_lowercase();
    let code = if m.contains("executable file not found")
        || m.contains("no such file or directory")
        || m.contains("not a directory")
    {
        127
    } else if m.contains("permission denied")
        || m.contains("is a directory")
        || m.contains("not an executable file")
    {
        126
    } else {
        POLIS_FAILED
    };
    Failure::with_code(code, message)
}

/// Waits until polisd's auto-remove has removed the container (at most 30 s; then it is removed here).
async fn wait_removed(client: &Client, id: &str) {
    let waited = tokio::time::timeout(
        Duration::from_secs(30),
        client.wait_container_for(id, proto::WaitCondition::Removed),
    )
    .await;
    match waited {
        Ok(Ok(_)) | Ok(Err(Error::NotFound(_))) => {}
        _ => {
            let _ = client.remove_container(id, true).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run_args(line: &[&str]) -> RunArgs {
        let mut argv = vec!["polis", "run"];
        argv.extend_from_slice(line);
        match crate::args::Cli::parse_from(argv).command {
            crate::args::Command::Run(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_become_the_spec() {
        let a = run_args(&[
            "-it",
            "--rm",
            "-p",
            "8080:80",
            "-v",
            "data:/data:ro",
            "-e",
            "A=1",
            "--name",
            "web",
            "--network",
            "front",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "busybox",
            "sh",
            "-c",
            "echo hi",
        ]);
        assert!(a.interactive && a.tty && a.rm);
        assert_eq!(a.name.as_deref(), Some("web"));
        let s = spec(&a).unwrap();
        assert_eq!(s.image, "busybox");
        assert_eq!(s.command, ["sh", "-c", "echo hi"]);
        assert!(s.tty && s.open_stdin && s.auto_remove);
        assert_eq!(s.env, ["A=1"]);
        assert_eq!(s.network, "front");
        assert_eq!(s.ports[0].host_port, 8080);
        assert_eq!(s.mounts[0].source, "data");
        let r = s.resources.unwrap();
        assert_eq!((r.memory_bytes, r.nano_cpus), (64 << 20, 500_000_000));
    }

    #[test]
    fn restart_and_rm_conflict() {
        let a = run_args(&["--rm", "--restart", "always", "busybox"]);
        assert!(spec(&a).unwrap_err().contains("--restart and --rm"));
        let a = run_args(&["--restart", "on-failure:3", "busybox"]);
        let r = spec(&a).unwrap().restart_policy.unwrap();
        assert_eq!(r.max_retries, 3);
    }
}
