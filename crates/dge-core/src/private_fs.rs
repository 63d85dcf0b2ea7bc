//! Folders and files only the service's own user may read.
//!
//! The data folder holds the SQLite database (password hashes, personal data) and
//! the outbox holds `.eml` files with live confirmation and reset links: with the
//! usual umask 022 they would be readable by every local user. Folders are made
//! 0700 and files 0600; ones found looser are tightened, with a warning, since an
//! operator may have created them by hand.

use std::io;
use std::path::Path;

/// Creates `dir` (and its parents) as 0700, or tightens it to 0700 if it exists
/// with group or other permissions.
///
/// # Errors
/// When the folder cannot be created or its mode changed.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        tighten(dir, 0o700)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Creates `file` empty as 0600 when it does not exist, else tightens it to 0600.
///
/// # Errors
/// When the file cannot be created or its mode changed.
pub fn private_file(file: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => tighten(file, 0o600),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(())
    }
}

/// Tightens `path` to `mode` if it exists with group or other permissions.
///
/// # Errors
/// When its mode cannot be changed.
pub fn tighten_if_present(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    if path.exists() {
        return tighten(path, mode);
    }
    let _ = (path, mode);
    Ok(())
}

#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            was = format!("{current:o}"),
            now = format!("{mode:o}"),
            "tightening permissions: other local users could read it"
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_and_loose_folders_and_files_end_private() {
        let root = std::env::temp_dir().join(format!("dge-private-{}", crate::new_id()));
        let dir = root.join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("db.sqlite3");
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&file, b"kept").unwrap();
        private_dir(&dir).unwrap();
        private_file(&file).unwrap();
        assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
        assert_eq!(std::fs::read(&file).unwrap(), b"kept");
        let wal = dir.join("db.sqlite3-wal");
        tighten_if_present(&wal, 0o600).unwrap();
        assert!(!wal.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
