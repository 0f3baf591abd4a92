//! Compiles polis.v1's protos once (with the system protoc, which hack/install-deps installs), generating the client
//! with the `client` feature and the server traits with the `server` feature. With the `serde` feature every message,
//! enum and oneof derives `serde::Serialize`, and the enum-typed fields (an `i32` in prost) serialize as the enum's
//! name through `src/serde_enums.rs`.

/// The enum-typed fields of polis.v1 and the function of `serde_enums` that names their values.
const ENUM_FIELDS: &[(&str, &str)] = &[
    ("ContainerState.status", "container_status"),
    ("ContainerFilter.statuses", "container_statuses"),
    ("RestartPolicy.kind", "restart_policy_kind"),
    ("Mount.kind", "mount_kind"),
    ("WaitContainerRequest.condition", "wait_condition"),
    ("LogEntry.stream", "output_stream"),
    ("Event.kind", "object_kind"),
    ("EventFilter.kinds", "object_kinds"),
];

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
    let mut builder = tonic_build::configure()
        .build_client(client)
        .build_server(server)
        .build_transport(false)
        .type_attribute(
            ".polis.v1",
            "#[cfg_attr(feature = \"serde\", derive(serde::Serialize))]",
        );
    for (field, function) in ENUM_FIELDS {
        builder = builder.field_attribute(
            format!(".polis.v1.{field}"),
            format!(
                "#[cfg_attr(feature = \"serde\", serde(serialize_with = \"crate::serde_enums::{function}\"))]"
            ),
        );
    }
    builder
        .file_descriptor_set_path(out.join("polis_v1_descriptor.bin"))
        .compile_protos(&protos, &[dir])
        .unwrap_or_else(|e| panic!("compile polis.v1's protos: {e}"));
}
