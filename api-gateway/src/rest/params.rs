//! Query parameters and bodies as dockerd reads them.

use super::ApiError;
use crate::core::Error;
use std::collections::HashMap;

pub type Query = axum::extract::Query<HashMap<String, String>>;

/// dockerd's boolValue: absent, "", "0", "no", "false" and "none" are false; anything else is true.
pub fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "" | "0" | "no" | "false" | "none"
        )
    })
}

pub fn int(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>, ApiError> {
    match q.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError(Error::Invalid(format!(
                "invalid value for {key}: {v:?} is not an integer"
            )))
        }),
    }
}

/// The `w` and `h` of a resize request (a terminal's columns and rows).
pub fn terminal_size(q: &HashMap<String, String>) -> Result<(u32, u32), ApiError> {
    let h = int(q, "h")?.unwrap_or(0);
    let w = int(q, "w")?.unwrap_or(0);
    if !(0..=u16::MAX as i64).contains(&h) || !(0..=u16::MAX as i64).contains(&w) {
        return Err(ApiError(Error::Invalid(format!(
            "invalid terminal size {w}x{h}"
        ))));
    }
    Ok((w as u32, h as u32))
}

/// A JSON body; malformed JSON is a 400 naming the problem.
pub fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return serde_json::from_slice(b"{}").map_err(|e| ApiError(Error::Invalid(e.to_string())));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        ApiError(Error::Invalid(format!(
            "invalid JSON body: {} (at {})",
            e.inner(),
            e.path()
        )))
    })
}

pub use crate::core::label_matches;

/// Docker's `filters` parameter: JSON of name → values (a list, or the old map of value → true).
pub fn filters(q: &HashMap<String, String>) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let Some(text) = q.get("filters").filter(|t| !t.is_empty()) else {
        return Ok(HashMap::new());
    };
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ApiError(Error::Invalid(format!("invalid filters: {e}"))))?;
    let mut out = HashMap::new();
    let Some(map) = value.as_object() else {
        return Err(ApiError(Error::Invalid(
            "invalid filters: not an object".into(),
        )));
    };
    for (k, v) in map {
        let values: Vec<String> = match v {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect(),
            serde_json::Value::Object(o) => o.keys().cloned().collect(),
            _ => return Err(ApiError(Error::Invalid(format!("invalid filter {k:?}")))),
        };
        out.insert(k.clone(), values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_as_dockerd_reads_them() {
        let q: HashMap<String, String> = [("a", "1"), ("b", "false"), ("c", "True"), ("d", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(
            flag(&q, "a") && !flag(&q, "b") && flag(&q, "c") && !flag(&q, "d") && !flag(&q, "e")
        );
    }

    #[test]
    fn filters_take_both_shapes() {
        let q: HashMap<String, String> = [(
            "filters".to_string(),
            r#"{"status":["exited"],"label":{"a=b":true}}"#.to_string(),
        )]
        .into();
        let f = filters(&q).unwrap();
        assert_eq!(f["status"], ["exited"]);
        assert_eq!(f["label"], ["a=b"]);
    }
}
