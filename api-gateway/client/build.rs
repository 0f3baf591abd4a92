//! Compiles polis.v1's protos once (with the system protoc, which hack/install-deps installs), generating the client
//! with the `client` feature and the server traits with the `server` feature.

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let protos: Vec<_> = ["system", "containers", "images", "networks", "volumes"]
        .iter()
        .map(|name| dir.join(format!("polis/v1/{name}.proto")))
        .collect();
    println!("cargo:rerun-if-changed={}", dir.display());
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let client = std::env::var_os("CARGO_FEATURE_CLIENT").is_some();
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    tonic_build::configure()
        .build_client(client)
        .build_server(server)
        .build_transport(false)
        .file_descriptor_set_path(out.join("polis_v1_descriptor.bin"))
        .compile_protos(&protos, &[dir])
        .unwrap_or_else(|e| panic!("compile polis.v1's protos: {e}"));
}
