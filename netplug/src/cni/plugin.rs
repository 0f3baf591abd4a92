//! The plugin side of the execution protocol (CNI spec "Section 2: Execution Protocol"): read the `CNI_*`
//! environment and the configuration on stdin, check them as the spec requires for each command, call the
//! [`Plugin`], and print its result, or the error result with a non-zero exit.
//!
//! [`dispatch`] does all of it on values given to it (environment map, argv, a reader for stdin), so tests never
//! touch the process environment; [`run_plugin`] is the thin wrapper a plugin's `main` calls.
//!
//! Required environment per command (CNI spec 1.1.0, each command's "Input"):
//!
//! | command | required                                       | optional                        |
//! |---------|------------------------------------------------|---------------------------------|
//! | ADD     | CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME | CNI_ARGS, CNI_PATH         |
//! | DEL     | CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME       | CNI_NETNS, CNI_ARGS, CNI_PATH   |
//! | CHECK   | CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME | CNI_ARGS, CNI_PATH         |
//! | STATUS  | CNI_COMMAND                                    | CNI_PATH                        |
//! | GC      | CNI_COMMAND, CNI_PATH                          |                                 |
//! | VERSION | CNI_COMMAND                                    |                                 |

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use serde_json::Value;

use super::args::CniArgs;
use super::names::{validate_container_id, validate_ifname, validate_network_name};
use super::types::{
    Attachment, CniResult, ErrorResult, NetConf, config_version, take_valid_attachments,
};
use super::version::{Version, VersionInfo, supported_list};
use crate::{Error, Result};

/// The environment as the dispatcher sees it.
pub type EnvMap = BTreeMap<String, String>;

/// A CNI command (`CNI_COMMAND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// The environment variables the command requires besides `CNI_COMMAND`.
    fn required_env(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Gc => &["CNI_PATH"],
            Command::Status | Command::Version => &[],
        }
    }

    /// The first version that defines the command.
    fn since(self) -> Version {
        match self {
            Command::Check => Version::V0_4_0,
            Command::Status | Command::Gc => Version::V1_1_0,
            _ => Version::V0_3_0,
        }
    }
}

/// An ADD, DEL or CHECK: one attachment `(CNI_CONTAINERID, CNI_IFNAME)` of a container to a network.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub command: Command,
    pub container_id: String,
    /// `CNI_NETNS`; always present for ADD and CHECK, maybe absent for DEL (clean up what can be cleaned up).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: CniArgs,
    /// `CNI_PATH`, split on `:` (empty entries dropped).
    pub path: Vec<PathBuf>,
    /// The configuration; for CHECK `prev_result` is always present, for ADD and DEL it may be.
    pub conf: NetConf,
}

/// A STATUS or GC: about the network, not one attachment.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkRequest {
    pub conf: NetConf,
    pub path: Vec<PathBuf>,
}

/// What a CNI plugin does; [`dispatch`] has checked the protocol before calling it.
pub trait Plugin {
    /// The `CNI_ARGS` keys this plugin understands. Others are refused (code 4) unless `IgnoreUnknown=1`.
    fn known_args(&self) -> &[&str] {
        &[]
    }

    /// ADD: create (or, chained, adjust) `ifname` in `netns`, and return the result. A `prev_result` must be
    /// passed through or modified, not dropped.
    fn add(&self, req: &Request) -> Result<CniResult>;

    /// DEL: release everything the attachment holds; succeed when it is already gone (DEL is idempotent).
    fn del(&self, req: &Request) -> Result<()>;

    /// CHECK: the attachment is as `conf.prev_result` says.
    fn check(&self, req: &Request) -> Result<()>;

    /// STATUS: ready for ADD, or an error, preferably code 50/51 ([`Error::Unavailable`]).
    fn status(&self, req: &NetworkRequest) -> Result<()>;

    /// GC: release resources of every attachment not in `valid_attachments`.
    fn gc(&self, req: &NetworkRequest, valid_attachments: &[Attachment]) -> Result<()>;
}

/// What the plugin process prints and returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn ok(stdout: String) -> Outcome {
        Outcome {
            exit_code: 0,
            stdout,
            stderr: String::new(),
        }
    }

    fn error(err: &Error, command: Option<Command>, version: Version) -> Outcome {
        let mut result = ErrorResult::from_error(err, version);
        // error.rs: running out of addresses is code 5 from ADD but 50 ("cannot service ADD requests") from STATUS.
        if command == Some(Command::Status) && matches!(err, Error::PoolExhausted { .. }) {
            result.code = 50;
        }
        Outcome {
            exit_code: 1,
            // Strings and integers only: serializing cannot fail.
            stdout: serde_json::to_string(&result).unwrap_or_default(),
            stderr: String::new(),
        }
    }
}

/// Runs one plugin invocation on the given argv, environment and stdin. `about` is the line printed for
/// `--version` (stdout) and when `CNI_COMMAND` is unset (stderr, as the reference plugins do), e.g.
/// "polis-netplug v0.1.0: CNI plugin for bridge networking".
pub fn dispatch(
    argv: &[String],
    env: &EnvMap,
    stdin: &mut dyn Read,
    plugin: &impl Plugin,
    about: &str,
) -> Outcome {
    let about_text = format!(
        "{about}\nCNI protocol versions supported: {}\n",
        supported_list()
    );
    if argv.iter().skip(1).any(|a| a == "--version" || a == "-V") {
        return Outcome::ok(about_text);
    }
    let command_var = env.get("CNI_COMMAND").map(String::as_str).unwrap_or("");
    if command_var.is_empty() {
        if !about.is_empty() {
            return Outcome {
                exit_code: 0,
                stdout: String::new(),
                stderr: about_text,
            };
        }
        let err = Error::Environment {
            var: "CNI_COMMAND",
            reason: "missing".into(),
        };
        return Outcome::error(&err, None, Version::CURRENT);
    }
    let Some(command) = Command::parse(command_var) else {
        let err = Error::Environment {
            var: "CNI_COMMAND",
            reason: format!(
                "unknown command {command_var:?} (ADD, DEL, CHECK, STATUS, GC or VERSION)"
            ),
        };
        return Outcome::error(&err, None, Version::CURRENT);
    };
    if command == Command::Version {
        // The input of VERSION is at most {"cniVersion": ...}; the answer does not depend on it.
        return Outcome::ok(serde_json::to_string(&VersionInfo::ours()).unwrap_or_default());
    }
    let mut bytes = Vec::new();
    if let Err(source) = stdin.read_to_end(&mut bytes) {
        let err = Error::Io {
            op: "read the network configuration from",
            path: PathBuf::from("stdin"),
            source,
        };
        return Outcome::error(&err, Some(command), Version::CURRENT);
    }
    // Errors are written in the configuration's version when it has one we speak.
    let version = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")?
                .as_str()
                .and_then(|s| Version::parse(s).ok())
        })
        .unwrap_or(Version::CURRENT);
    match handle(command, env, &bytes, plugin) {
        Ok(stdout) => Outcome::ok(stdout),
        Err(err) => Outcome::error(&err, Some(command), version),
    }
}

/// Checks one command's environment and configuration, calls the plugin, and returns what goes to stdout.
fn handle(command: Command, env: &EnvMap, stdin: &[u8], plugin: &impl Plugin) -> Result<String> {
    let var = |name: &str| env.get(name).map(String::as_str).filter(|v| !v.is_empty());

    let missing: Vec<&str> = command
        .required_env()
        .iter()
        .copied()
        .filter(|name| var(name).is_none())
        .collect();
    if let Some(first) = missing.first() {
        return Err(Error::Environment {
            var: first,
            reason: format!(
                "required for {} but missing: {}",
                command.as_str(),
                missing.join(", ")
            ),
        });
    }
    let attachment = matches!(command, Command::Add | Command::Del | Command::Check);
    if attachment {
        validate_container_id(var("CNI_CONTAINERID").unwrap_or(""))?;
        validate_ifname(var("CNI_IFNAME").unwrap_or(""))?;
    }
    let args = if attachment {
        let args = CniArgs::parse(var("CNI_ARGS").unwrap_or(""))?;
        args.check_known(plugin.known_args())?;
        args
    } else {
        CniArgs::default()
    };
    let path: Vec<PathBuf> = var("CNI_PATH")
        .unwrap_or("")
        .split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();

    let value: Value = serde_json::from_slice(stdin).map_err(|e| Error::Decode {
        what: "network configuration",
        reason: e.to_string(),
    })?;
    let obj = value.as_object().ok_or_else(|| Error::Decode {
        what: "network configuration",
        reason: "not a JSON object".into(),
    })?;
    match obj.get("name").and_then(Value::as_str) {
        Some(name) => validate_network_name(name)?,
        None => {
            return Err(Error::InvalidConfig {
                reason: "missing network name".into(),
            });
        }
    }
    let version = config_version(obj)?;
    if version < command.since() {
        return Err(Error::CommandNotInVersion {
            command: command.as_str(),
            version: version.to_string(),
            needs: command.since().as_str(),
        });
    }
    let mut conf = NetConf::from_value(value)?;

    if attachment {
        let req = Request {
            command,
            container_id: var("CNI_CONTAINERID").unwrap_or("").to_string(),
            netns: var("CNI_NETNS").map(PathBuf::from),
            ifname: var("CNI_IFNAME").unwrap_or("").to_string(),
            args,
            path,
            conf,
        };
        match command {
            Command::Add => Ok(plugin.add(&req)?.to_json(req.conf.cni_version)),
            Command::Del => plugin.del(&req).map(|()| String::new()),
            _ => {
                if req.conf.prev_result.is_none() {
                    return Err(Error::InvalidConfig {
                        reason: "CHECK needs prevResult, the result of the preceding ADD".into(),
                    });
                }
                plugin.check(&req).map(|()| String::new())
            }
        }
    } else if command == Command::Gc {
        let valid = take_valid_attachments(&mut conf.plugin)?.ok_or_else(|| Error::InvalidConfig {
            reason: "GC needs cni.dev/valid-attachments (refusing to take every attachment for stale)".into(),
        })?;
        plugin
            .gc(&NetworkRequest { conf, path }, &valid)
            .map(|()| String::new())
    } else {
        plugin
            .status(&NetworkRequest { conf, path })
            .map(|()| String::new())
    }
}

/// The `main` of a plugin: [`dispatch`] on the process's argv, environment and stdin; prints what it returns and
/// gives the exit code.
pub fn run_plugin(plugin: &impl Plugin, about: &str) -> i32 {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let env: EnvMap = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let outcome = dispatch(&argv, &env, &mut std::io::stdin().lock(), plugin, about);
    let mut stdout = std::io::stdout().lock();
    let stdout_ok = stdout
        .write_all(outcome.stdout.as_bytes())
        .and_then(|()| stdout.flush())
        .is_ok();
    // Only unstructured text goes to stderr; there is nothing to do if it cannot be written.
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    if stdout_ok { outcome.exit_code } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::types::{Interface, IpConfig};
    use serde_json::json;
    use std::cell::RefCell;

    /// A plugin that records its calls and answers with what it was told to.
    #[derive(Default)]
    struct Fake {
        calls: RefCell<Vec<String>>,
        requests: RefCell<Vec<Request>>,
        network_requests: RefCell<Vec<(NetworkRequest, Vec<Attachment>)>>,
        fail_with: RefCell<Option<Error>>,
    }

    impl Fake {
        fn failing(err: Error) -> Fake {
            let f = Fake::default();
            *f.fail_with.borrow_mut() = Some(err);
            f
        }
        fn answer<T>(&self, name: &str, ok: T) -> Result<T> {
            self.calls.borrow_mut().push(name.into());
            match self.fail_with.borrow_mut().take() {
                Some(e) => Err(e),
                None => Ok(ok),
            }
        }
    }

    fn result() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                sandbox: Some("/run/netns/c1".into()),
                mtu: Some(1500),
                ..Default::default()
            }],
            ips: vec![IpConfig {
                address: "10.88.0.2/16".parse().unwrap(),
                gateway: Some("10.88.0.1".parse().unwrap()),
                interface: Some(0),
            }],
            ..Default::default()
        }
    }

    impl Plugin for Fake {
        fn known_args(&self) -> &[&str] {
            &["MAC"]
        }
        fn add(&self, req: &Request) -> Result<CniResult> {
            self.requests.borrow_mut().push(req.clone());
            self.answer("ADD", result())
        }
        fn del(&self, req: &Request) -> Result<()> {
            self.requests.borrow_mut().push(req.clone());
            self.answer("DEL", ())
        }
        fn check(&self, req: &Request) -> Result<()> {
            self.requests.borrow_mut().push(req.clone());
            self.answer("CHECK", ())
        }
        fn status(&self, req: &NetworkRequest) -> Result<()> {
            self.network_requests
                .borrow_mut()
                .push((req.clone(), vec![]));
            self.answer("STATUS", ())
        }
        fn gc(&self, req: &NetworkRequest, valid: &[Attachment]) -> Result<()> {
            self.network_requests
                .borrow_mut()
                .push((req.clone(), valid.to_vec()));
            self.answer("GC", ())
        }
    }

    fn env(command: &str) -> EnvMap {
        let mut e = EnvMap::new();
        e.insert("CNI_COMMAND".into(), command.into());
        e.insert("CNI_CONTAINERID".into(), "c1".into());
        e.insert("CNI_NETNS".into(), "/run/netns/c1".into());
        e.insert("CNI_IFNAME".into(), "eth0".into());
        e.insert("CNI_PATH".into(), "/opt/cni/bin::/usr/lib/cni".into());
        e
    }

    fn conf(version: &str) -> Value {
        json!({"cniVersion": version, "name": "polis", "type": "polis-netplug", "bridge": "polis0"})
    }

    fn run(env: &EnvMap, stdin: &Value, plugin: &Fake) -> Outcome {
        let text = stdin.to_string();
        dispatch(
            &["polis-netplug".into()],
            env,
            &mut text.as_bytes(),
            plugin,
            "polis-netplug test",
        )
    }

    fn error_of(out: &Outcome) -> Value {
        assert_eq!(out.exit_code, 1, "{out:?}");
        serde_json::from_str(&out.stdout).unwrap()
    }

    /// CNI spec "ADD": the environment reaches the plugin, the result is printed in the config's version.
    #[test]
    fn add_prints_result_in_config_version() {
        let fake = Fake::default();
        let mut e = env("ADD");
        e.insert("CNI_ARGS".into(), "MAC=00:11:22:33:44:55".into());
        let out = run(&e, &conf("1.1.0"), &fake);
        assert_eq!(out.exit_code, 0, "{out:?}");
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v, result().to_value(Version::V1_1_0));
        let req = &fake.requests.borrow()[0];
        assert_eq!(req.container_id, "c1");
        assert_eq!(
            req.netns.as_deref(),
            Some(std::path::Path::new("/run/netns/c1"))
        );
        assert_eq!(req.ifname, "eth0");
        assert_eq!(req.args.get("MAC"), Some("00:11:22:33:44:55"));
        assert_eq!(
            req.path,
            [PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(req.conf.plugin["bridge"], "polis0");
    }

    /// CNI spec 0.4.0 "Result": a 0.4.0 configuration gets a 0.4.0 result (with IP `version`); a prevResult in
    /// 1.0.0 form reaches the plugin parsed.
    #[test]
    fn add_in_0_4_0_converts_result_and_prev_result() {
        let fake = Fake::default();
        let mut c = conf("0.4.0");
        c["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.9/16"}]});
        let out = run(&env("ADD"), &c, &fake);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
        assert!(v["interfaces"][0].get("mtu").is_none());
        let prev = fake.requests.borrow()[0].conf.prev_result.clone().unwrap();
        assert_eq!(prev.ips[0].address.to_string(), "10.88.0.9/16");
    }

    /// CNI spec "Error codes" 4: the message names every missing variable; the error is in the config's version.
    #[test]
    fn add_missing_environment_is_code_4() {
        let fake = Fake::default();
        let mut e = env("ADD");
        e.remove("CNI_NETNS");
        e.insert("CNI_IFNAME".into(), String::new());
        let v = error_of(&run(&e, &conf("1.0.0"), &fake));
        assert_eq!(v["code"], 4);
        assert_eq!(v["cniVersion"], "1.0.0");
        let msg = v["msg"].as_str().unwrap();
        assert!(
            msg.contains("CNI_NETNS") && msg.contains("CNI_IFNAME"),
            "{msg}"
        );
        assert!(fake.calls.borrow().is_empty());
    }

    /// CNI spec "DEL": CNI_NETNS is optional; CNI_CONTAINERID and CNI_IFNAME are not.
    #[test]
    fn del_without_netns() {
        let fake = Fake::default();
        let mut e = env("DEL");
        e.remove("CNI_NETNS");
        let out = run(&e, &conf("1.1.0"), &fake);
        assert_eq!((out.exit_code, out.stdout.as_str()), (0, ""));
        assert_eq!(fake.requests.borrow()[0].netns, None);

        e.remove("CNI_CONTAINERID");
        let v = error_of(&run(&e, &conf("1.1.0"), &fake));
        assert_eq!(v["code"], 4);
        assert!(v["msg"].as_str().unwrap().contains("CNI_CONTAINERID"));
    }

    /// CNI spec "Parameters": container ID and interface name rules, code 4 naming the variable.
    #[test]
    fn container_id_and_ifname_rules() {
        for (var, value) in [
            ("CNI_CONTAINERID", "-abc"),
            ("CNI_CONTAINERID", "_abc"),
            ("CNI_CONTAINERID", "ab/c"),
            ("CNI_CONTAINERID", "ab c"),
            ("CNI_IFNAME", "abcdefghijklmnop"),
            ("CNI_IFNAME", "."),
            ("CNI_IFNAME", ".."),
            ("CNI_IFNAME", "a/b"),
            ("CNI_IFNAME", "a:b"),
            ("CNI_IFNAME", "a b"),
            ("CNI_IFNAME", "a\tb"),
        ] {
            let fake = Fake::default();
            let mut e = env("ADD");
            e.insert(var.into(), value.into());
            let v = error_of(&run(&e, &conf("1.1.0"), &fake));
            assert_eq!(v["code"], 4, "{var}={value:?}");
            assert!(v["msg"].as_str().unwrap().contains(var), "{v}");
        }
    }

    /// `CNI_ARGS`: unknown keys need IgnoreUnknown (code 4).
    #[test]
    fn cni_args_unknown_keys() {
        let fake = Fake::default();
        let mut e = env("ADD");
        e.insert("CNI_ARGS".into(), "K8S_POD_NAME=web".into());
        assert_eq!(error_of(&run(&e, &conf("1.1.0"), &fake))["code"], 4);
        e.insert("CNI_ARGS".into(), "IgnoreUnknown=1;K8S_POD_NAME=web".into());
        assert_eq!(run(&e, &conf("1.1.0"), &fake).exit_code, 0);
    }

    /// CNI spec "CHECK" (from 0.4.0): code 1 in older versions; needs prevResult; prints nothing on success.
    #[test]
    fn check_paths() {
        let fake = Fake::default();
        let mut c = conf("0.3.1");
        c["prevResult"] = result().to_value(Version::V0_3_1);
        assert_eq!(error_of(&run(&env("CHECK"), &c, &fake))["code"], 1);

        assert_eq!(
            error_of(&run(&env("CHECK"), &conf("1.0.0"), &fake))["code"],
            7
        );

        let mut c = conf("1.0.0");
        c["prevResult"] = result().to_value(Version::V1_0_0);
        let out = run(&env("CHECK"), &c, &fake);
        assert_eq!((out.exit_code, out.stdout.as_str()), (0, ""));
        assert_eq!(*fake.calls.borrow(), ["CHECK"]);
        assert_eq!(
            fake.requests.borrow()[0]
                .conf
                .prev_result
                .as_ref()
                .unwrap()
                .ips,
            result().ips
        );
    }

    /// CNI spec 1.1.0 "STATUS": only CNI_COMMAND needed; code 1 before 1.1.0; 50/51 for "not available".
    #[test]
    fn status_paths() {
        let fake = Fake::default();
        let mut e = EnvMap::new();
        e.insert("CNI_COMMAND".into(), "STATUS".into());
        let out = run(&e, &conf("1.1.0"), &fake);
        assert_eq!((out.exit_code, out.stdout.as_str()), (0, ""));
        assert_eq!(*fake.calls.borrow(), ["STATUS"]);

        assert_eq!(error_of(&run(&e, &conf("1.0.0"), &fake))["code"], 1);

        let unavailable = Fake::failing(Error::Unavailable {
            reason: "bridge missing".into(),
            limited_connectivity: true,
        });
        assert_eq!(error_of(&run(&e, &conf("1.1.0"), &unavailable))["code"], 51);
        let exhausted = Fake::failing(Error::PoolExhausted {
            network: "polis".into(),
            pool: "10.88.0.0/16".into(),
        });
        assert_eq!(error_of(&run(&e, &conf("1.1.0"), &exhausted))["code"], 50);
    }

    /// CNI spec 1.1.0 "GC": needs CNI_PATH and the valid attachments; code 1 before 1.1.0.
    #[test]
    fn gc_paths() {
        let fake = Fake::default();
        let mut e = EnvMap::new();
        e.insert("CNI_COMMAND".into(), "GC".into());
        let mut c = conf("1.1.0");
        c["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
        let v = error_of(&run(&e, &c, &fake));
        assert_eq!(v["code"], 4);
        assert!(v["msg"].as_str().unwrap().contains("CNI_PATH"));

        e.insert("CNI_PATH".into(), "/usr/lib/cni".into());
        let out = run(&e, &c, &fake);
        assert_eq!((out.exit_code, out.stdout.as_str()), (0, ""));
        let (req, valid) = fake.network_requests.borrow()[0].clone();
        assert_eq!(
            valid,
            [Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }]
        );
        assert!(!req.conf.plugin.contains_key("cni.dev/valid-attachments"));
        assert_eq!(req.path, [PathBuf::from("/usr/lib/cni")]);

        assert_eq!(error_of(&run(&e, &conf("1.1.0"), &fake))["code"], 7);
        let mut old = conf("1.0.0");
        old["cni.dev/valid-attachments"] = json!([]);
        assert_eq!(error_of(&run(&e, &old, &fake))["code"], 1);
    }

    /// CNI spec "VERSION": no configuration needed (stdin is not read), the supported list printed.
    #[test]
    fn version_needs_no_config() {
        struct NoStdin;
        impl Read for NoStdin {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                panic!("VERSION must not read stdin")
            }
        }
        let mut e = EnvMap::new();
        e.insert("CNI_COMMAND".into(), "VERSION".into());
        let out = dispatch(&[], &e, &mut NoStdin, &Fake::default(), "about");
        assert_eq!(out.exit_code, 0);
        let v: VersionInfo = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v, VersionInfo::ours());
    }

    /// Reference plugins: no CNI_COMMAND prints the about line on stderr; `--version` on stdout.
    #[test]
    fn about_line() {
        let out = dispatch(
            &[],
            &EnvMap::new(),
            &mut &b""[..],
            &Fake::default(),
            "polis-netplug v0",
        );
        assert_eq!(out.exit_code, 0);
        assert!(
            out.stderr
                .starts_with("polis-netplug v0\nCNI protocol versions supported: 0.3.0")
        );
        let argv = ["polis-netplug".to_string(), "--version".to_string()];
        let out = dispatch(
            &argv,
            &env("ADD"),
            &mut &b""[..],
            &Fake::default(),
            "polis-netplug v0",
        );
        assert!(out.stdout.starts_with("polis-netplug v0\n"));
        let out = dispatch(&[], &EnvMap::new(), &mut &b""[..], &Fake::default(), "");
        assert_eq!(error_of(&out)["code"], 4);
    }

    /// CNI spec "Error codes": unknown command 4, undecodable config 6, unknown version 1 (error written in the
    /// current version), plugin errors keep their code.
    #[test]
    fn error_codes_and_shape() {
        let fake = Fake::default();
        let v = error_of(&run(&env("FROB"), &conf("1.1.0"), &fake));
        assert_eq!(v["code"], 4);

        let text = "{not json";
        let out = dispatch(&[], &env("ADD"), &mut text.as_bytes(), &fake, "");
        assert_eq!(error_of(&out)["code"], 6);

        let v = error_of(&run(&env("ADD"), &conf("0.2.0"), &fake));
        assert_eq!(
            (v["code"].as_u64(), v["cniVersion"].as_str()),
            (Some(1), Some("1.1.0"))
        );

        let taken = Fake::failing(Error::AddressUnavailable {
            network: "polis".into(),
            address: "10.88.0.5".into(),
            reason: "taken".into(),
        });
        let v = error_of(&run(&env("ADD"), &conf("1.0.0"), &taken));
        assert_eq!(v["code"], 7);
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(v["msg"].as_str().unwrap().contains("10.88.0.5"));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["cniVersion", "code", "msg"]);
    }
}
