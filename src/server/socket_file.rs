//! The Unix socket files a server created, and their removal when its
//! listeners close (see [`drain`](super::drain)).

use std::path::{Path, PathBuf};

/// A Unix socket file the server created: removed when its listeners close
/// (when this is dropped), so no stale file is left behind, but only if it is
/// still the file this server bound. A successor that replaced it while we
/// drained keeps its own.
#[derive(Debug)]
pub(super) struct SocketFile {
    /// Where it is.
    path: PathBuf,
    /// Device and inode at bind time, to recognise it.
    id: Option<(u64, u64)>,
}

impl SocketFile {
    /// Remembers the file now at `path`, just bound.
    pub(super) fn new(path: &Path) -> SocketFile {
        SocketFile {
            path: path.to_path_buf(),
            id: file_id(path),
        }
    }
}

/// The device and inode of the file at `path`, if there is one.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.id.is_some() && file_id(&self.path) == self.id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
