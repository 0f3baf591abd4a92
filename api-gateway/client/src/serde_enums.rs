//! With the `serde` feature: the enum-typed fields of the messages (an `i32` in prost) serialize as the enum value's
//! name in the proto ("CONTAINER_STATUS_RUNNING"), as protobuf's JSON mapping writes them; a number the enum does
//! not know stays a number. build.rs names these functions in each such field's `serialize_with`.

#![cfg(feature = "serde")]

use crate::proto;
use serde::Serializer;
use serde::ser::SerializeSeq;

/// Defines, for an enum, a function for a field of it and one for a repeated field of it.
macro_rules! names {
    ($($one:ident, $many:ident: $enum:ty;)*) => {
        $(
            pub(crate) fn $one<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
                match <$enum>::try_from(*value) {
                    Ok(e) => s.serialize_str(e.as_str_name()),
                    Err(_) => s.serialize_i32(*value),
                }
            }

            #[allow(dead_code)]
            pub(crate) fn $many<S: Serializer>(values: &[i32], s: S) -> Result<S::Ok, S::Error> {
                /// One value, serialized by name.
                struct Named(i32);
                impl serde::Serialize for Named {
                    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                        $one(&self.0, s)
                    }
                }
                let mut seq = s.serialize_seq(Some(values.len()))?;
                for v in values {
                    seq.serialize_element(&Named(*v))?;
                }
                seq.end()
            }
        )*
    };
}

names! {
    container_status, container_statuses: proto::ContainerStatus;
    restart_policy_kind, restart_policy_kinds: proto::RestartPolicyKind;
    mount_kind, mount_kinds: proto::mount::Kind;
    wait_condition, wait_conditions: proto::WaitCondition;
    output_stream, output_streams: proto::OutputStream;
    object_kind, object_kinds: proto::ObjectKind;
}
