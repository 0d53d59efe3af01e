//! The Unix socket files a server created, and their removal when its
//! listeners close (see [`drain`](super::drain)).

use std::path::{Path, PathBuf};

/// A Unix socket file the server created: removed when its listeners close
/// (when this is dropped), so no stale file is left behind, but only if it is
/// still the file this server bound and nobody accepts on it. A successor that
/// replaced it while we drained keeps its own, even when the file system gave
/// its socket our old inode: a live socket is never removed.
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
        // Under the lock a binding server takes (`endpoint::bind_unix`):
        // without it, a successor could find our closed socket stale, remove
        // it and bind its own between our check and our removal, and we
        // would remove the successor's. If the lock cannot be had, the file
        // is left: a stale file is replaced by the next server anyway.
        let patience = crate::endpoint::LOCK_PATIENCE;
        let Ok(_lock) = crate::endpoint::lock_beside(&self.path, patience) else {
            return;
        };
        // The device and inode alone are not enough: ours was unlinked by a
        // successor that found it stale, and the successor's new socket may
        // have been given the same inode. Only a socket that refuses is ours.
        if self.id.is_some() && file_id(&self.path) == self.id {
            let _ = crate::endpoint::remove_if_stale(&self.path);
        }
    }
}
