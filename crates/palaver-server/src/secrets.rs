//! Development secrets: generated once into the data folder, so a fresh
//! clone runs with zero setup and tokens survive restarts. Production never
//! generates secrets (see `Config::validate`).

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use rand::Rng as _;
use secrecy::SecretString;

/// Reads `name` from `<data_dir>/secrets/`, creating it with 32 random bytes
/// (base64) if missing. The file is readable by its owner only.
pub fn load_or_generate(data_dir: &Path, name: &str) -> std::io::Result<SecretString> {
    load_or_generate_with(data_dir, name, || {
        let bytes: [u8; 32] = rand::rng().random();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    })
}

/// Where a development secret lives, whether or not it exists yet.
pub fn path(data_dir: &Path, name: &str) -> std::path::PathBuf {
    data_dir.join("secrets").join(name)
}

/// [`load_or_generate`] with the secret's text made by `generate`.
pub fn load_or_generate_with(
    data_dir: &Path,
    name: &str,
    generate: impl FnOnce() -> String,
) -> std::io::Result<SecretString> {
    let dir = data_dir.join("secrets");
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(SecretString::from(text.trim().to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(&dir)?;
    let secret = generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            tracing::warn!(path = %path.display(), "generated a development secret; set it explicitly in production");
            Ok(SecretString::from(secret))
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(SecretString::from(std::fs::read_to_string(&path)?.trim().to_owned()))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = super::load_or_generate(dir.path(), "jwt").unwrap();
        let second = super::load_or_generate(dir.path(), "jwt").unwrap();
        assert_eq!(first.expose_secret(), second.expose_secret());
        assert!(first.expose_secret().len() >= 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("secrets/jwt")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
