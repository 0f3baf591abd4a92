//! runtime-spec config.md#hostname and config.md#domainname (UTS namespace).

use polis_integration::*;

fn report(rt: &Runtime, b: &Bundle) -> Value {
    let c = rt.container();
    let out = c.run(b);
    out.ok();
    out.json()
}

conformance_test!(
    /// config.md#hostname: "hostname (string, OPTIONAL) specifies the container's hostname as seen by processes
    /// running inside the container."
    hostname_set,
    |rt| {
        let mut b = Bundle::new();
        b.set("/hostname", json!("polis-host-1"));
        assert_eq!(report(rt, &b)["hostname"], "polis-host-1");
    }
);

conformance_test!(
    /// config.md#domainname: "domainname (string, OPTIONAL) specifies the container's domainname as seen by
    /// processes running inside the container."
    domainname_set,
    runc_lacks = "runc 1.1.5 predates runtime-spec 1.2 domainname",
    |rt| {
        let mut b = Bundle::new();
        b.set("/domainname", json!("polis.example"));
        let v = report(rt, &b);
        assert_eq!(v["domainname"], "polis.example");
    }
);

conformance_test!(
    /// config.md#hostname: the hostname is the container's own: changing it inside the container's UTS namespace
    /// leaves the host's hostname alone.
    hostname_change_stays_in_container,
    |rt| {
        let host_before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let mut b = Bundle::new();
        let caps = json!(["CAP_SYS_ADMIN"]);
        b.set("/process/capabilities", json!({"bounding": caps, "effective": caps, "permitted": caps}));
        b.sh("hostname changed-inside && hostname");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        assert_eq!(out.stdout.trim(), "changed-inside");
        assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host_before);
    }
);

conformance_test!(
    /// config-linux.md#namespaces (uts): with a new UTS namespace and no hostname set, the container does not see a
    /// hostname the runtime invented from its config (it keeps the value the namespace was created with).
    hostname_unset_inherits,
    |rt| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let mut b = Bundle::new();
        b.remove("/hostname");
        assert_eq!(report(rt, &b)["hostname"], host.trim());
    }
);

conformance_test!(
    /// runc contract for config.md#hostname: setting a hostname without a private UTS namespace would change the
    /// host's; the runtime must refuse with an error instead.
    hostname_without_uts_namespace_fails,
    |rt| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let mut b = Bundle::new();
        b.without_namespace("uts");
        b.set("/hostname", json!("must-not-apply"));
        let c = rt.container();
        let out = c.run(&b);
        out.fails();
        if rt.is_polis() {
            out.stderr_mentions("uts");
        }
        assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host);
        c.assert_gone();
    }
);

conformance_test!(
    /// config.md#hostname: a hostname of the maximum length (64 bytes) is applied in full.
    hostname_max_length,
    |rt| {
        let name = "h".repeat(64);
        let mut b = Bundle::new();
        b.set("/hostname", json!(name));
        assert_eq!(report(rt, &b)["hostname"], name.as_str());
    }
);
