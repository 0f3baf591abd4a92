//! Certificates for the tests of TLS listeners, made by `openssl` (Debian's openssl package): a CA and a server
//! and a client certificate it signs, all on EC P-256 and valid for a day.

use std::path::Path;
use std::process::Command;

/// Runs `openssl ARGS` in `dir`, which must succeed.
#[track_caller]
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes in `dir` a CA (`NAME-ca.pem`) and certificates it signs: `NAME-server.pem` for 127.0.0.1 and
/// `NAME-client.pem`, each with its `-key.pem`.
pub fn make(dir: &Path, name: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = format!("{name}-ca.pem");
    let ca_key = format!("{name}-ca-key.pem");
    let subject = format!("/CN={name} test CA");
    let mut args = vec!["req", "-x509", "-days", "1", "-subj", &subject];
    args.extend_from_slice(&ec);
    args.extend_from_slice(&["-keyout", &ca_key, "-out", &ca]);
    openssl(dir, &args);
    for (role, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        ),
        (
            "client",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        ),
    ] {
        let key = format!("{name}-{role}-key.pem");
        let csr = format!("{name}-{role}.csr");
        let cert = format!("{name}-{role}.pem");
        let ext_file = format!("{name}-{role}.ext");
        std::fs::write(dir.join(&ext_file), ext).unwrap();
        let subject = format!("/CN={name} {role}");
        let mut args = vec!["req", "-subj", &subject];
        args.extend_from_slice(&ec);
        args.extend_from_slice(&["-keyout", &key, "-out", &csr]);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &ext_file,
                "-out",
                &cert,
            ],
        );
    }
}

/// The path of `dir/NAME.pem` as a string, as config files and command lines want it.
pub fn pem(dir: &Path, name: &str) -> String {
    dir.join(format!("{name}.pem")).display().to_string()
}

/// A `[TABLE]` of polisd.toml for a TCP listener on `address` with the `NAME` PKI's server certificate and CA.
pub fn polisd_listener(table: &str, address: &str, dir: &Path, name: &str) -> String {
    format!(
        "[{table}]\naddress = \"{address}\"\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
        pem(dir, &format!("{name}-server")),
        pem(dir, &format!("{name}-server-key")),
        pem(dir, &format!("{name}-ca")),
    )
}
