//! polis-netplug: the CNI plugin binary (bridge, address management, port mapping, isolation).

fn main() {
    // The network's DNS resolver (polis_netplug::dns): a hidden subcommand, run detached by ADD.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(polis_netplug::dns::SERVE_COMMAND) {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::stderr)
            .init();
        std::process::exit(polis_netplug::dns::serve_main(&args[2..]));
    }
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .init();
    let about = concat!(
        "polis-netplug v",
        env!("CARGO_PKG_VERSION"),
        ": CNI plugin for bridge networking"
    );
    std::process::exit(polis_netplug::cni::run_plugin(
        &polis_netplug::bridge_plugin::BridgePlugin,
        about,
    ));
}
