//! Node identity on disk: the node id (a ULID in `<data>/node-id`, created
//! once) and the generation (in `<data>/generation`, bumped at each start).
//!
//! Both files are written atomically (temporary file, fsync, rename, fsync
//! of the directory), so a crash leaves either the old content or the new
//! one, never a torn file.

use std::{
    fs, io,
    io::Write,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use ulid::Ulid;

use crate::ClusterError;

/// The file, in the data directory, that holds the node id.
pub const NODE_ID_FILE: &str = "node-id";

/// The file, in the data directory, that holds the last generation.
pub const GENERATION_FILE: &str = "generation";

/// The node id kept in `<dir>/node-id`: read it, or create it (a new ULID,
/// written atomically) when the file does not exist. `dir` is created if
/// needed.
pub fn load_or_create_node_id(dir: &Path) -> Result<Ulid, ClusterError> {
    let path = dir.join(NODE_ID_FILE);
    match read_trimmed(&path)? {
        Some(text) => Ulid::from_string(&text).map_err(|_| ClusterError::BadNodeId {
            path: path.clone(),
            value: text,
        }),
        None => {
            let id = Ulid::new();
            write_atomically(dir, NODE_ID_FILE, format!("{id}\n").as_bytes())?;
            Ok(id)
        }
    }
}

/// The generation of this start: the current Unix time in milliseconds, or
/// one more than the generation of the previous start when the clock went
/// back, so that a restart always has a higher generation (views keep the
/// highest generation of a node id). Kept in `<dir>/generation`, written
/// atomically; `dir` is created if needed.
pub fn next_generation(dir: &Path) -> Result<u64, ClusterError> {
    let path = dir.join(GENERATION_FILE);
    let last = match read_trimmed(&path)? {
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| ClusterError::BadGeneration {
                    path: path.clone(),
                    value: text,
                })?,
        ),
        None => None,
    };
    let generation = match last {
        Some(last) => unix_ms().max(last.saturating_add(1)),
        None => unix_ms(),
    };
    write_atomically(dir, GENERATION_FILE, format!("{generation}\n").as_bytes())?;
    Ok(generation)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The content of `path`, trimmed, or `None` if it does not exist.
fn read_trimmed(path: &Path) -> Result<Option<String>, ClusterError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ClusterError::ReadFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write `<dir>/<name>` so that a crash leaves the old or the new content:
/// write and fsync `<name>.tmp`, rename it over `<name>`, fsync `dir` (so
/// the rename itself is durable).
fn write_atomically(dir: &Path, name: &str, content: &[u8]) -> Result<(), ClusterError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ClusterError::WriteFile { path, source }
    };
    fs::create_dir_all(dir).map_err(write_err(dir))?;
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut file = fs::File::create(&tmp).map_err(write_err(&tmp))?;
    file.write_all(content).map_err(write_err(&tmp))?;
    file.sync_all().map_err(write_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(write_err(&path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_err(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_created_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = load_or_create_node_id(&data).unwrap();
        let text = fs::read_to_string(data.join(NODE_ID_FILE)).unwrap();
        assert_eq!(text, format!("{first}\n"));
        assert!(!data.join("node-id.tmp").exists());
        assert_eq!(load_or_create_node_id(&data).unwrap(), first);
    }

    #[test]
    fn node_id_file_with_spaces_around_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let id = Ulid::new();
        fs::write(dir.path().join(NODE_ID_FILE), format!("  {id}\n\n")).unwrap();
        assert_eq!(load_or_create_node_id(dir.path()).unwrap(), id);
    }

    #[test]
    fn a_bad_node_id_file_names_the_path_and_the_value() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(NODE_ID_FILE), "not-a-ulid\n").unwrap();
        let err = load_or_create_node_id(dir.path()).unwrap_err();
        assert!(matches!(err, ClusterError::BadNodeId { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("node-id") && msg.contains("\"not-a-ulid\""),
            "{msg}"
        );
    }

    #[test]
    fn an_unreadable_node_id_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading it fails (EISDIR).
        fs::create_dir(dir.path().join(NODE_ID_FILE)).unwrap();
        let err = load_or_create_node_id(dir.path()).unwrap_err();
        assert!(matches!(err, ClusterError::ReadFile { .. }), "{err:?}");
        assert!(err.to_string().contains("node-id"), "{err}");
    }

    #[test]
    fn a_failed_write_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the temporary file goes: creating it fails.
        fs::create_dir(dir.path().join("node-id.tmp")).unwrap();
        let err = load_or_create_node_id(dir.path()).unwrap_err();
        assert!(matches!(err, ClusterError::WriteFile { .. }), "{err:?}");
        assert!(err.to_string().contains("node-id.tmp"), "{err}");
        assert!(!dir.path().join(NODE_ID_FILE).exists());
    }

    #[test]
    fn generations_increase_across_starts_even_if_the_clock_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = next_generation(dir.path()).unwrap();
        assert!(first > 1_600_000_000_000, "unix ms: {first}");
        let second = next_generation(dir.path()).unwrap();
        assert!(second > first);
        // A previous start far in the future (the clock went back since).
        let future = unix_ms() + 3_600_000;
        fs::write(dir.path().join(GENERATION_FILE), format!("{future}\n")).unwrap();
        assert_eq!(next_generation(dir.path()).unwrap(), future + 1);
    }

    #[test]
    fn a_bad_generation_file_names_the_path_and_the_value() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(GENERATION_FILE), "soon").unwrap();
        let err = next_generation(dir.path()).unwrap_err();
        assert!(matches!(err, ClusterError::BadGeneration { .. }), "{err:?}");
        assert!(err.to_string().contains("generation"), "{err}");
    }
}
