//! polis-netplug: the CNI plugin binary (bridge, address management, port mapping, isolation).

fn main() {
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
        &polis_netplug::bridge::BridgePlugin,
        about,
    ));
}
