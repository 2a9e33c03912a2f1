//! State files of components (active alerts, learned drift references):
//! JSON, read at build, written atomically so a crash mid-write leaves the
//! previous state rather than half a file.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::component::ComponentError;

/// Reads `path`; `Ok(None)` when there is no state yet. `what` names the
/// state in errors ("alert state").
pub fn load<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>, ComponentError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ComponentError::new(
                "io",
                format!("reading {}: {e}", path.display()),
            ))
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        ComponentError::new(
            "state",
            format!("{} is not a {what} file: {e}", path.display()),
        )
    })
}

/// Writes `value` to `path` through a temporary file and a rename.
pub fn save<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        assert_eq!(super::load::<Vec<u32>>(&p, "test state").unwrap(), None);
        super::save(&p, &vec![1u32, 2]).unwrap();
        assert_eq!(
            super::load::<Vec<u32>>(&p, "test state").unwrap(),
            Some(vec![1, 2])
        );
        std::fs::write(&p, "nonsense").unwrap();
        let e = super::load::<Vec<u32>>(&p, "test state").unwrap_err();
        assert!(e.message.contains("is not a test state file"), "{e}");
    }
}
