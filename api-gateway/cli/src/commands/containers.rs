//! Containers: `ps`, `logs`, `exec`, `start`, `stop`, `kill`, `restart`, `rm`.

use crate::args::{Containers, ExecArgs, Format, KillArgs, LogsArgs, PsArgs, RmArgs, StopArgs};
use crate::error::{Failure, Result, each};
use crate::format::{Table, ago, ellipsis, human_duration, json_line, now_unix_nano, short_id};
use crate::stdio::{self, End, Forward};
use crate::{parse, tty};
use polis_client::{Client, proto};

/// `ps`: running containers (every one with `-a`), newest first, as docker's table or JSON lines.
pub async fn ps(client: &Client, a: PsArgs) -> Result<()> {
    let mut filter = proto::ContainerFilter::default();
    for f in &a.filter {
        let keys = [
            "id", "name", "label", "status", "ancestor", "exited", "network",
        ];
        let (k, v) = parse::filter(f, &keys).map_err(Failure::new)?;
        let v = v.to_string();
        match k {
            "id" => filter.ids.push(v),
            "name" => filter.names.push(v),
            "label" => filter.labels.push(v),
            "status" => filter.statuses.push(status_named(&v)? as i32),
            "ancestor" => filter.ancestors.push(v),
            "exited" => filter.exit_codes.push(
                v.parse()
                    .map_err(|_| Failure::new(format!("invalid exit code {v:?}")))?,
            ),
            _ => filter.networks.push(v),
        }
    }
    let containers = client
        .list_containers_with(proto::ListContainersRequest {
            all: a.all,
            limit: 0,
            filter: Some(filter),
        })
        .await?;
    if a.quiet {
        for c in &containers {
            println!("{}", short_id(&c.id, a.no_trunc));
        }
        return Ok(());
    }
    if a.format == Format::Json {
        containers.iter().for_each(json_line);
        return Ok(());
    }
    let mut t = Table::new(&[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]);
    for c in &containers {
        let command = c.command.join(" ");
        let command = if a.no_trunc {
            command
        } else {
            ellipsis(&command, 20)
        };
        t.row(vec![
            short_id(&c.id, a.no_trunc),
            c.image.clone(),
            format!("\"{command}\""),
            ago(c.created_unix_nano),
            status_text(c),
            String::new(),
            c.name.clone(),
        ]);
    }
    t.print();
    Ok(())
}

/// A status as `--filter status=` names it.
fn status_named(name: &str) -> Result<proto::ContainerStatus> {
    use proto::ContainerStatus as S;
    Ok(match name {
        "created" => S::Created,
        "running" => S::Running,
        "paused" => S::Paused,
        "restarting" => S::Restarting,
        "removing" => S::Removing,
        "exited" => S::Exited,
        "dead" => S::Dead,
        other => {
            return Err(Failure::new(format!(
                "invalid status {other:?} (created, restarting, running, removing, paused, exited or dead)"
            )));
        }
    })
}

/// docker's STATUS column: "Up 5 minutes", "Exited (0) 2 seconds ago", "Created"...
pub fn status_text(c: &proto::Container) -> String {
    use proto::ContainerStatus as S;
    let s = c.state.clone().unwrap_or_default();
    let since = |t: i64| human_duration((now_unix_nano() - t) / 1_000_000_000);
    match S::try_from(s.status).unwrap_or(S::Unspecified) {
        S::Running => format!("Up {}", since(s.started_at_unix_nano)),
        S::Paused => format!("Up {} (Paused)", since(s.started_at_unix_nano)),
        S::Restarting => format!(
            "Restarting ({}) {}",
            s.exit_code,
            ago(s.finished_at_unix_nano)
        ),
        S::Created => "Created".into(),
        S::Removing => "Removal In Progress".into(),
        S::Exited if s.finished_at_unix_nano == 0 => format!("Exited ({})", s.exit_code),
        S::Exited => format!("Exited ({}) {}", s.exit_code, ago(s.finished_at_unix_nano)),
        S::Dead => "Dead".into(),
        S::Unspecified => String::new(),
    }
}

/// `logs`: what the log holds (the last N lines with `--tail N`), then with `-f` what the container writes.
pub async fn logs(client: &Client, a: LogsArgs) -> Result<()> {
    let tail = match a.tail.as_str() {
        "all" | "" => None,
        n => Some(
            n.parse::<u32>()
                .map_err(|_| Failure::new(format!("invalid --tail {n:?} (a number or \"all\")")))?,
        ),
    };
    let mut entries = client
        .logs_with(proto::ContainerLogsRequest {
            id: a.container,
            follow: a.follow,
            tail,
            ..Default::default()
        })
        .await?;
    while let Some(entry) = entries.next().await? {
        stdio::write_entry(&entry);
    }
    Ok(())
}

/// `exec`: a process in a running container, its stdio here; the process's exit code.
pub async fn exec(client: &Client, a: ExecArgs) -> Result<i32> {
    let terminal = a.tty && a.interactive;
    if terminal && !tty::stdin_is_terminal() {
        return Err(Failure::new("the input device is not a TTY"));
    }
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for e in &a.env {
        env.extend(parse::env_var(e, lookup).map_err(Failure::new)?);
    }
    let size = if a.tty { tty::size() } else { None };
    let (input, output) = client
        .exec(proto::ExecStart {
            container_id: a.container,
            command: a.command,
            env,
            working_dir: a.workdir.unwrap_or_default(),
            user: a.user.unwrap_or_default(),
            tty: a.tty,
            stdin: a.interactive,
            size: size.map(|(width, height)| proto::TerminalSize { width, height }),
            privileged: a.privileged,
        })
        .await?;
    let raw = if terminal {
        Some(tty::RawMode::enable()?)
    } else {
        None
    };
    let forward = Forward {
        stdin: a.interactive,
        tty: a.tty,
        signals_to: None,
    };
    let end = stdio::pump(input, output, forward).await;
    drop(raw);
    match end? {
        End::Exited(code) => Ok(code as i32),
        End::Signalled(n) => Ok(128 + n),
        End::Closed => Err(Failure::new("the exec ended without an exit code")),
    }
}

/// `start`: prints each name it started.
pub async fn start(client: &Client, a: Containers) -> Result<()> {
    each(&a.containers, |name| async move {
        client.start_container(&name).await?;
        println!("{name}");
        Ok(())
    })
    .await
}

/// `stop`: prints each name it stopped.
pub async fn stop(client: &Client, a: StopArgs) -> Result<()> {
    each(&a.containers, |name| async move {
        client.stop_container(&name, a.time).await?;
        println!("{name}");
        Ok(())
    })
    .await
}

/// `kill`: prints each name it signalled.
pub async fn kill(client: &Client, a: KillArgs) -> Result<()> {
    let signal = &a.signal;
    each(&a.containers, |name| async move {
        client.kill_container(&name, signal).await?;
        println!("{name}");
        Ok(())
    })
    .await
}

/// `restart`: prints each name it restarted.
pub async fn restart(client: &Client, a: StopArgs) -> Result<()> {
    each(&a.containers, |name| async move {
        client.restart_container(&name, a.time).await?;
        println!("{name}");
        Ok(())
    })
    .await
}

/// `rm`: prints each name it removed.
pub async fn rm(client: &Client, a: RmArgs) -> Result<()> {
    each(&a.containers, |name| async move {
        client
            .remove_container_with(&name, a.force, a.volumes)
            .await?;
        println!("{name}");
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_column() {
        let now = now_unix_nano();
        let c = |status: proto::ContainerStatus, exit_code, started, finished| proto::Container {
            state: Some(proto::ContainerState {
                status: status as i32,
                exit_code,
                started_at_unix_nano: started,
                finished_at_unix_nano: finished,
                ..Default::default()
            }),
            ..Default::default()
        };
        use proto::ContainerStatus as S;
        assert_eq!(
            status_text(&c(S::Running, 0, now - 5_000_000_000, 0)),
            "Up 5 seconds"
        );
        assert_eq!(
            status_text(&c(S::Exited, 3, 0, now - 120_000_000_000)),
            "Exited (3) 2 minutes ago"
        );
        assert_eq!(status_text(&c(S::Created, 0, 0, 0)), "Created");
        assert!(status_named("running").is_ok());
        assert!(status_named("sleeping").is_err());
    }
}
