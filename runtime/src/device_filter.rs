//! The device cgroup on cgroup v2 hosts: an eBPF program attached to the container's cgroup.
//!
//! cgroup v2 has no `devices.allow`/`devices.deny` files; the kernel asks BPF_CGROUP_DEVICE
//! programs attached to the cgroup instead (Documentation/admin-guide/cgroup-v2.rst, "Device
//! controller"). libcgroups 0.7 can build one (its `cgroupsv2_devices` feature), but first raises
//! RLIMIT_MEMLOCK to 128 MiB, which needs CAP_SYS_RESOURCE and fails on hosts without it (this
//! one), so every container would fail to start. Since Linux 5.11 BPF memory is charged to the
//! memory cgroup and needs no such limit. polis-runc therefore builds the program itself and
//! attaches it from the host once the cgroup is made, before the user's program can
//! run (`start`); processes that join later (`exec`) are under it too.
//!
//! The rules are the ones the v1 device controller gets (`cgroups::place_v1`): `linux.resources.devices`
//! in order, then the devices every container has. As in cgroup v1, a rule that covers every
//! device sets the default and a later rule that matches a device decides for it: the program
//! checks the rules after the last such catch-all, last first, and falls back to its default.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use crate::error::{Error, Result};

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        }
    }
}

// Opcodes (include/uapi/linux/bpf.h, bpf_common.h).
const LDX_MEM_W: u8 = 0x61;
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JNE_K: u8 = 0x55;
const JMP_EXIT: u8 = 0x95;

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }: access_type is
// (access << 16) | type.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

// Registers: r1 the context, r2 the device type, r3 the access asked for, r4 major, r5 minor,
// r6 scratch, r0 the verdict.
const PROLOGUE: [Insn; 6] = [
    Insn::new(LDX_MEM_W, 2, 1, 0, 0),
    Insn::new(ALU64_MOV_X, 3, 2, 0, 0),
    Insn::new(ALU64_AND_K, 2, 0, 0, 0xffff),
    Insn::new(ALU64_RSH_K, 3, 0, 0, 16),
    Insn::new(LDX_MEM_W, 4, 1, 4, 0),
    Insn::new(LDX_MEM_W, 5, 1, 8, 0),
];

/// The rules the container's device cgroup enforces: the config's, then those of the devices
/// every container has (as libcgroups gives the v1 controller).
pub fn container_rules(resources: Option<&LinuxResources>) -> Vec<LinuxDeviceCgroup> {
    let mut rules: Vec<LinuxDeviceCgroup> = resources
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    // /dev/null, zero, full, tty, urandom, random.
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (5, 0), (1, 9), (1, 8)] {
        rules.push(rule(LinuxDeviceType::C, Some(major), Some(minor), "rwm"));
    }
    rules.push(rule(LinuxDeviceType::C, None, None, "m"));
    rules.push(rule(LinuxDeviceType::B, None, None, "m"));
    // /dev/console, /dev/pts/*, /dev/ptmx, /dev/net/tun.
    rules.push(rule(LinuxDeviceType::C, Some(5), Some(1), "rwm"));
    rules.push(rule(LinuxDeviceType::C, Some(136), None, "rwm"));
    rules.push(rule(LinuxDeviceType::C, Some(5), Some(2), "rwm"));
    rules.push(rule(LinuxDeviceType::C, Some(10), Some(200), "rwm"));
    rules
}

/// The access bits a rule names; no access string means all of them.
fn access_bits(rule: &LinuxDeviceCgroup) -> i32 {
    match rule.access() {
        None => ACC_ALL,
        Some(a) => a.chars().fold(0, |bits, c| {
            bits | match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => 0,
            }
        }),
    }
}

/// The kernel's device type for a rule: None for all types. FIFOs ('p') are no devices: the
/// device cgroup never sees them, so such rules check nothing.
fn device_type(rule: &LinuxDeviceCgroup) -> Option<Option<i32>> {
    match rule.typ() {
        None | Some(LinuxDeviceType::A) => Some(None),
        Some(LinuxDeviceType::B) => Some(Some(DEV_BLOCK)),
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some(Some(DEV_CHAR)),
        Some(LinuxDeviceType::P) => None,
    }
}

fn number(n: Option<i64>) -> Option<i32> {
    n.filter(|&n| n >= 0).and_then(|n| i32::try_from(n).ok())
}

fn is_catch_all(rule: &LinuxDeviceCgroup) -> bool {
    device_type(rule) == Some(None)
        && number(rule.major()).is_none()
        && number(rule.minor()).is_none()
        && access_bits(rule) == ACC_ALL
}

/// The program for `rules`: 1 lets the access through, 0 refuses it (EPERM).
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    let start = rules.iter().rposition(is_catch_all);
    // Without a catch-all the cgroup starts as v1's root does: everything allowed.
    let default_allow = start.is_none_or(|i| rules[i].allow());
    let checked = &rules[start.map_or(0, |i| i + 1)..];
    let mut insns = PROLOGUE.to_vec();
    for rule in checked.iter().rev() {
        let Some(typ) = device_type(rule) else {
            continue;
        };
        let access = access_bits(rule);
        // Each test jumps to the next rule when it does not match; the offsets are filled in
        // once the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        let mut jumps: Vec<usize> = Vec::new();
        if let Some(t) = typ {
            jumps.push(block.len());
            block.push(Insn::new(JMP_JNE_K, 2, 0, 0, t));
        }
        if access != ACC_ALL {
            block.push(Insn::new(ALU64_MOV_X, 6, 3, 0, 0));
            jumps.push(block.len() + 1);
            if rule.allow() {
                // An allow rule matches when it covers every access asked for.
                block.push(Insn::new(ALU64_AND_K, 6, 0, 0, !access & ACC_ALL));
                block.push(Insn::new(JMP_JNE_K, 6, 0, 0, 0));
            } else {
                // A deny rule matches when it covers any of them.
                block.push(Insn::new(ALU64_AND_K, 6, 0, 0, access));
                block.push(Insn::new(JMP_JEQ_K, 6, 0, 0, 0));
            }
        }
        if let Some(major) = number(rule.major()) {
            jumps.push(block.len());
            block.push(Insn::new(JMP_JNE_K, 4, 0, 0, major));
        }
        if let Some(minor) = number(rule.minor()) {
            jumps.push(block.len());
            block.push(Insn::new(JMP_JNE_K, 5, 0, 0, minor));
        }
        block.push(Insn::new(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow())));
        block.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for j in jumps {
            block[j].off = (len - j - 1) as i16;
        }
        insns.extend(block);
    }
    insns.push(Insn::new(ALU64_MOV_K, 0, 0, 0, i32::from(default_allow)));
    insns.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
    insns
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Loads `insns` and attaches them to the cgroup v2 directory `cgroup_dir` (host side). Other
/// programs attached there or above keep working: every one of them must allow an access.
pub fn attach_on_host(cgroup_dir: &Path, insns: &[Insn]) -> Result<()> {
    let fail = |what: &str, detail: String| {
        Error::Invalid(format!(
            "device cgroup of {}: {what}: {detail}",
            cgroup_dir.display()
        ))
    };
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level,
    // log_size, log_buf; the rest stays zero.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[24..28].copy_from_slice(&1u32.to_ne_bytes());
    attr[28..32].copy_from_slice(&(log.len() as u32).to_ne_bytes());
    attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: bpf(2) reads the attribute block and the instruction, license and log buffers it
    // points to, all of which outlive the call; it returns a new descriptor or -1.
    let prog = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), attr.len()) };
    if prog < 0 {
        let err = std::io::Error::last_os_error();
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let verifier = String::from_utf8_lossy(&log[..end]);
        return Err(fail("load the eBPF program", format!("{err} {verifier}")));
    }
    // SAFETY: the kernel just created this descriptor for us.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as i32) };
    let dir = std::fs::File::open(cgroup_dir).map_err(|e| fail("open", e.to_string()))?;
    // union bpf_attr for BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags.
    let mut attr = [0u8; 32];
    attr[0..4].copy_from_slice(&(dir.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    attr[12..16].copy_from_slice(&BPF_F_ALLOW_MULTI.to_ne_bytes());
    // SAFETY: bpf(2) reads the attribute block, which outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, attr.as_ptr(), attr.len()) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        return Err(fail("attach the eBPF program", err.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: bool, typ: &str, major: i64, minor: i64, access: &str) -> LinuxDeviceCgroup {
        serde_json::from_value(serde_json::json!({
            "allow": allow, "type": typ, "major": major, "minor": minor, "access": access
        }))
        .unwrap()
    }

    /// Runs the program the way the kernel would, for one access.
    fn verdict(insns: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> i64 {
        let ctx = [((access << 16) | typ) as u32, major as u32, minor as u32];
        let mut r = [0i64; 11];
        let mut pc = 0;
        loop {
            let i = insns[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = i64::from(ctx[(i.off / 4) as usize]),
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_MOV_K => r[dst] = i64::from(i.imm),
                ALU64_AND_K => r[dst] &= i64::from(i.imm),
                ALU64_RSH_K => r[dst] >>= i.imm,
                JMP_JNE_K if r[dst] != i64::from(i.imm) => pc += i.off as usize,
                JMP_JEQ_K if r[dst] == i64::from(i.imm) => pc += i.off as usize,
                JMP_JNE_K | JMP_JEQ_K => {}
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn runc_default_rules() {
        let resources: LinuxResources = serde_json::from_value(serde_json::json!({
            "devices": [{"allow": false, "access": "rwm"}]
        }))
        .unwrap();
        let p = program(&container_rules(Some(&resources)));
        let read = ACC_READ;
        assert_eq!(
            verdict(&p, DEV_CHAR, read | ACC_WRITE, 1, 3),
            1,
            "/dev/null"
        );
        assert_eq!(verdict(&p, DEV_CHAR, read, 136, 4), 1, "/dev/pts/4");
        assert_eq!(verdict(&p, DEV_BLOCK, read, 8, 0), 0, "/dev/sda");
        assert_eq!(
            verdict(&p, DEV_BLOCK, ACC_MKNOD, 8, 0),
            1,
            "mknod of any node"
        );
        assert_eq!(verdict(&p, DEV_CHAR, read, 1, 1), 0, "/dev/mem");
    }

    #[test]
    fn later_rules_win_and_access_is_checked() {
        let base = vec![
            rule(false, "a", -1, -1, "rwm"),
            rule(true, "c", 240, 0, "w"),
            rule(true, "c", 241, 0, "rwm"),
            rule(false, "c", 241, 0, "w"),
        ];
        let p = program(&base);
        assert_eq!(verdict(&p, DEV_CHAR, ACC_WRITE, 240, 0), 1);
        assert_eq!(verdict(&p, DEV_CHAR, ACC_READ, 240, 0), 0, "only w allowed");
        assert_eq!(verdict(&p, DEV_CHAR, ACC_READ, 241, 0), 1);
        assert_eq!(
            verdict(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 241, 0),
            0,
            "w denied later"
        );
        assert_eq!(verdict(&p, DEV_BLOCK, ACC_READ, 240, 0), 0, "type checked");
        let open = program(&[rule(false, "c", 1, 1, "rwm")]);
        assert_eq!(verdict(&open, DEV_CHAR, ACC_READ, 1, 1), 0);
        assert_eq!(
            verdict(&open, DEV_CHAR, ACC_READ, 1, 3),
            1,
            "no catch-all: allowed"
        );
    }
}
