//! The token `dgectl login` keeps for later commands, in the user's configuration
//! folder (`$XDG_CONFIG_HOME/dgectl`, else `~/.config/dgectl`), readable by the user
//! only (folder 0700, file 0600).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::cli::Token;
use crate::error::CliError;

/// What `dgectl login` saved.
#[derive(Debug)]
pub(crate) struct Saved {
    /// The provider that issued the token.
    pub(crate) issuer: String,
    /// The client the token was issued to.
    pub(crate) client_id: String,
    /// The gRPC server the login was made for.
    pub(crate) server: String,
    /// The access token.
    pub(crate) token: Token,
    /// When it expires, Unix seconds.
    pub(crate) expires_at: i64,
}

/// The folder of dgectl's own files.
fn folder() -> Result<PathBuf, CliError> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".config"),
            None => {
                return Err(CliError::Usage(
                    "neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the token".into(),
                ));
            }
        },
    };
    Ok(base.join("dgectl"))
}

/// Where the token is kept.
pub(crate) fn path() -> Result<PathBuf, CliError> {
    Ok(folder()?.join("credentials.json"))
}

fn unreadable(path: &std::path::Path, cause: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!(
        "cannot use the saved login {}: {cause} (run dgectl logout, then dgectl login)",
        path.display()
    ))
}

/// The saved login, if any.
pub(crate) fn load() -> Result<Option<Saved>, CliError> {
    let path = path()?;
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(&path, e)),
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| unreadable(&path, e))?;
    let field = |name: &str| v.get(name).and_then(Value::as_str).unwrap_or_default();
    let token = field("access_token")
        .parse()
        .map_err(|e| unreadable(&path, e))?;
    Ok(Some(Saved {
        issuer: field("issuer").to_owned(),
        client_id: field("client_id").to_owned(),
        server: field("server").to_owned(),
        token,
        expires_at: v.get("expires_at").and_then(Value::as_i64).unwrap_or(0),
    }))
}

/// Saves a login, replacing the previous one; the file is created 0600 before the
/// token is written to it, then moved into place.
pub(crate) fn save(saved: &Saved) -> Result<PathBuf, CliError> {
    let dir = folder()?;
    let fail = |e: std::io::Error| {
        CliError::Usage(format!("cannot save the token in {}: {e}", dir.display()))
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(fail)?;
    let body = json!({
        "issuer": saved.issuer,
        "client_id": saved.client_id,
        "server": saved.server,
        "access_token": saved.token.expose(),
        "expires_at": saved.expires_at,
    });
    let path = dir.join("credentials.json");
    let temp = dir.join(format!(".credentials.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&temp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(fail)?;
    // The mode above is masked by the umask, which can only remove bits; set it anyway.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    file.write_all(body.to_string().as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    fs::rename(&temp, &path).map_err(fail)?;
    Ok(path)
}

/// Deletes the saved login; whether there was one.
pub(crate) fn delete() -> Result<bool, CliError> {
    let path = path()?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CliError::Usage(format!(
            "cannot delete {}: {e}",
            path.display()
        ))),
    }
}
