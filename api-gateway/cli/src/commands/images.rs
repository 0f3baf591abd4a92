//! Images: `pull`, `images`, `rmi`.

use crate::args::{Format, ImagesArgs, PullArgs, RmiArgs};
use crate::error::{Result, each};
use crate::format::{Table, ago, decimal_size, json_line, short_id};
use crate::progress::{self, Progress, Sink};
use crate::tty;
use polis_client::Client;

/// `pull`: progress bars on a terminal, plain lines otherwise; then the image's name.
pub async fn pull(client: &Client, a: PullArgs) -> Result<()> {
    let stream = client.pull(&a.image).await?;
    let shown = (!a.quiet).then(|| Progress::new(Sink::Stdout, tty::stdout_is_terminal()));
    let image = progress::follow(stream, shown).await?;
    println!("{}", image.name);
    Ok(())
}

/// A name split into repository and tag ("127.0.0.1:5000/busybox:latest": "127.0.0.1:5000/busybox", "latest");
/// a name by digest has the tag "<none>".
pub fn repository_and_tag(name: &str) -> (String, String) {
    if let Some((repo, _)) = name.split_once('@') {
        return (repo.to_string(), "<none>".to_string());
    }
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (name.to_string(), "<none>".to_string()),
    }
}

/// `images`: REPOSITORY, TAG, IMAGE ID, CREATED, SIZE (or IDs, or JSON lines).
pub async fn images(client: &Client, a: ImagesArgs) -> Result<()> {
    let mut images = client.list_images().await?;
    if let Some(r) = &a.reference {
        images.retain(|i| i.name == *r || repository_and_tag(&i.name).0 == *r);
    }
    if a.quiet {
        let mut seen = Vec::new();
        for i in &images {
            let id = short_id(&i.id, a.no_trunc);
            if !seen.contains(&id) {
                println!("{id}");
                seen.push(id);
            }
        }
        return Ok(());
    }
    if a.format == Format::Json {
        images.iter().for_each(json_line);
        return Ok(());
    }
    let mut t = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    for i in &images {
        let (repo, tag) = repository_and_tag(&i.name);
        let created = if i.created_unix > 0 {
            ago(i.created_unix * 1_000_000_000)
        } else {
            "N/A".to_string()
        };
        t.row(vec![
            repo,
            tag,
            short_id(&i.id, a.no_trunc),
            created,
            decimal_size(i.size_bytes as f64),
        ]);
    }
    t.print();
    Ok(())
}

/// `rmi`: "Untagged: NAME" and "Deleted: ID" lines, as docker prints them.
pub async fn rmi(client: &Client, a: RmiArgs) -> Result<()> {
    each(&a.images, |name| async move {
        let removed = client.remove_image(&name, a.force).await?;
        for u in &removed.untagged {
            println!("Untagged: {u}");
        }
        for d in &removed.deleted {
            println!("Deleted: {d}");
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_repository_and_tag() {
        let split = |n: &str| repository_and_tag(n);
        assert_eq!(split("busybox:latest"), ("busybox".into(), "latest".into()));
        assert_eq!(
            split("127.0.0.1:5000/busybox:1"),
            ("127.0.0.1:5000/busybox".into(), "1".into())
        );
        assert_eq!(
            split("127.0.0.1:5000/busybox"),
            ("127.0.0.1:5000/busybox".into(), "<none>".into())
        );
        assert_eq!(
            split("busybox@sha256:ab"),
            ("busybox".into(), "<none>".into())
        );
    }
}
