//! runtime-spec config-linux.md#sysctl: "sysctl (object, OPTIONAL) allows kernel parameters to be modified at
//! runtime for the container."

use polis_integration::*;

fn read_in_container(rt: &Runtime, sysctl: Value, path: &str) -> Output {
    let mut b = Bundle::new();
    b.set("/linux/sysctl", sysctl);
    b.probe(&["read", path]);
    let c = rt.container();
    c.run(&b)
}

conformance_test!(
    /// config-linux.md#sysctl: a network sysctl applies inside the container's network namespace
    /// (net.ipv4.ip_forward), and not on the host.
    net_ipv4_ip_forward,
    |rt| {
        let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        let want = if host.trim() == "1" { "0" } else { "1" };
        let out = read_in_container(rt, json!({"net.ipv4.ip_forward": want}), "/proc/sys/net/ipv4/ip_forward");
        out.ok();
        assert_eq!(out.json()["content"].as_str().map(str::trim), Some(want));
        assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(), host);
    }
);

conformance_test!(
    /// config-linux.md#sysctl: several sysctls at once, with a key in slash form as well as dot form is not
    /// required; dotted keys with nested components (net.ipv4.conf.all.forwarding, net.ipv4.ping_group_range).
    net_several,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/sysctl", json!({"net.ipv4.conf.all.forwarding": "1", "net.ipv4.ping_group_range": "0 1000"}));
        b.sh("cat /proc/sys/net/ipv4/conf/all/forwarding /proc/sys/net/ipv4/ping_group_range");
        let c = rt.container();
        let out = c.run(&b);
        out.ok();
        let words: Vec<&str> = out.stdout.split_whitespace().collect();
        assert_eq!(words, vec!["1", "0", "1000"], "{out}");
    }
);

conformance_test!(
    /// config-linux.md#sysctl: an IPC namespace sysctl (kernel.msgmax) applies in the container's IPC namespace.
    kernel_msgmax_ipc,
    |rt| {
        let out = read_in_container(rt, json!({"kernel.msgmax": "12345"}), "/proc/sys/kernel/msgmax");
        out.ok();
        assert_eq!(out.json()["content"].as_str().map(str::trim), Some("12345"));
        assert_ne!(std::fs::read_to_string("/proc/sys/kernel/msgmax").unwrap().trim(), "12345");
    }
);

conformance_test!(
    /// config-linux.md#sysctl: a UTS namespace sysctl (kernel.domainname) applies in the container's UTS namespace.
    kernel_domainname_uts,
    |rt| {
        let out = read_in_container(rt, json!({"kernel.domainname": "sysctl.example"}), "/proc/sys/kernel/domainname");
        out.ok();
        assert_eq!(out.json()["content"].as_str().map(str::trim), Some("sysctl.example"));
    }
);

conformance_test!(
    /// runc contract for config-linux.md#sysctl: a network sysctl without a private network namespace would change
    /// the host, so it is refused with an error and nothing is left behind.
    net_sysctl_without_netns_fails,
    |rt| {
        let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        let mut b = Bundle::new();
        b.without_namespace("network");
        b.set("/linux/sysctl", json!({"net.ipv4.ip_forward": if host.trim() == "1" { "0" } else { "1" }}));
        let c = rt.container();
        c.create(&b).fails();
        assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(), host);
        c.assert_gone();
    }
);

conformance_test!(
    /// config-linux.md#sysctl / runtime.md#lifecycle: "If the runtime is unable to create the environment specified
    /// in the config.json, it MUST generate an error." An unknown sysctl cannot be set.
    unknown_sysctl_fails,
    |rt| {
        let mut b = Bundle::new();
        b.set("/linux/sysctl", json!({"net.polis.does_not_exist": "1"}));
        let c = rt.container();
        c.create(&b).fails();
        c.assert_gone();
    }
);

conformance_test!(
    /// runc contract for config-linux.md#sysctl: a sysctl that is not namespaced (vm.*) is refused.
    non_namespaced_sysctl_fails,
    |rt| {
        let host = std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
        let mut b = Bundle::new();
        b.set("/linux/sysctl", json!({"vm.swappiness": "7"}));
        let c = rt.container();
        c.create(&b).fails();
        assert_eq!(std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap(), host);
        c.assert_gone();
    }
);
