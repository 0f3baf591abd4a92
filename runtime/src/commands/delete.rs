use anyhow::Result;
use polis_runc::store::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kill the container first if it is still running.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Container ID.
    pub id: String,
}

pub fn run(store: &Store, args: &Args) -> Result<u8> {
    polis_runc::lifecycle::delete_container(store, &args.id, args.force)?;
    Ok(0)
}
