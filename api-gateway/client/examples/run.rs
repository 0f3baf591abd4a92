//! Pulls an image, runs a container that prints a line, streams its logs, and removes it:
//! `cargo run -p polis-client --example run -- [SOCKET] [IMAGE]` (as root: the socket is root's).

use polis_client::{Client, DEFAULT_SOCKET, proto};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let socket = args.next().unwrap_or_else(|| DEFAULT_SOCKET.to_string());
    let image = args.next().unwrap_or_else(|| "busybox:latest".to_string());
    let client = Client::connect(&socket).await?;
    let version = client.version().await?;
    println!("polisd {} (API {})", version.version, version.api_version);

    let mut pull = client.pull(&image).await?;
    while let Some(event) = pull.next().await? {
        match event.event {
            Some(proto::pull_image_event::Event::Progress(p)) if p.layer.is_empty() => {
                println!("{}", p.status)
            }
            Some(proto::pull_image_event::Event::Image(i)) => {
                println!("pulled {} ({})", i.name, i.id)
            }
            _ => {}
        }
    }

    let id = client
        .create_container(
            "",
            proto::ContainerSpec {
                image,
                command: vec!["echo".into(), "hello from polis".into()],
                ..Default::default()
            },
        )
        .await?;
    client.start_container(&id).await?;
    let mut logs = client.logs(&id, true).await?;
    while let Some(entry) = logs.next().await? {
        print!("{}", String::from_utf8_lossy(&entry.data));
    }
    println!("exit code {}", client.wait_container(&id).await?);
    client.remove_container(&id, true).await?;
    Ok(())
}
