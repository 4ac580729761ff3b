//! Finding the Postgres server binaries (`initdb`, `pg_ctl`, `postgres`):
//! `SCOPEGATE_PG_BINDIR`, `PATH`, `pg_config --bindir`, then the usual
//! package folders.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::EmbeddedError;

/// Where the server binaries live.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub bindir: PathBuf,
}

/// The places searched, in order. Separated from the environment so the
/// "missing binaries" path can be tested.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub explicit: Option<PathBuf>,
    pub path_dirs: Vec<PathBuf>,
    pub use_pg_config: bool,
    pub globs: Vec<PathBuf>,
}

impl Search {
    /// The search this machine's environment implies.
    pub fn from_env() -> Self {
        let mut globs = Vec::new();
        for parent in [
            "/usr/lib/postgresql",
            "/usr/pgsql",
            "/opt/homebrew/opt",
            "/usr/local/opt",
        ] {
            if let Ok(rd) = std::fs::read_dir(parent) {
                let mut found: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| {
                        let n = p.file_name().and_then(OsStr::to_str).unwrap_or("");
                        parent.starts_with("/usr/lib") || n.starts_with("postgresql")
                    })
                    .map(|p| p.join("bin"))
                    .collect();
                // Highest version first.
                found.sort_by_key(|p| std::cmp::Reverse(version_of(p)));
                globs.extend(found);
            }
        }
        globs.push(PathBuf::from("/usr/local/pgsql/bin"));
        Search {
            explicit: std::env::var_os("SCOPEGATE_PG_BINDIR").map(PathBuf::from),
            path_dirs: std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
            use_pg_config: true,
            globs,
        }
    }
}

fn version_of(p: &Path) -> u32 {
    p.parent()
        .and_then(|d| d.file_name())
        .and_then(OsStr::to_str)
        .map(|n| n.trim_start_matches(|c: char| !c.is_ascii_digit()))
        .and_then(|n| n.split(['.', '@']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn has_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

impl Binaries {
    pub fn locate() -> Result<Self, EmbeddedError> {
        Self::locate_in(&Search::from_env())
    }

    pub fn locate_in(search: &Search) -> Result<Self, EmbeddedError> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = &search.explicit {
            // An explicit choice is the only one tried.
            candidates.push(dir.clone());
        } else {
            candidates.extend(search.path_dirs.iter().cloned());
            if search.use_pg_config {
                if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
                    if out.status.success() {
                        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                        if !dir.is_empty() {
                            candidates.push(PathBuf::from(dir));
                        }
                    }
                }
            }
            candidates.extend(search.globs.iter().cloned());
        }
        for dir in &candidates {
            if has_binaries(dir) {
                // Resolve symlinks (Debian links pg_ctl into /usr/bin to a wrapper).
                let bindir = std::fs::canonicalize(dir.join("postgres"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .filter(|d| has_binaries(d))
                    .unwrap_or_else(|| dir.clone());
                return Ok(Binaries { bindir });
            }
        }
        let mut searched: Vec<String> = Vec::new();
        if search.explicit.is_some() {
            searched.push("SCOPEGATE_PG_BINDIR".into());
        } else {
            searched.push("PATH".into());
            if search.use_pg_config {
                searched.push("`pg_config --bindir`".into());
            }
            searched.extend(search.globs.iter().map(|p| p.display().to_string()));
        }
        Err(EmbeddedError::BinariesMissing {
            searched: searched.join(", "),
        })
    }

    pub(super) fn tool(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_say_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let search = Search {
            explicit: None,
            path_dirs: vec![empty.path().to_path_buf()],
            use_pg_config: false,
            globs: vec![empty.path().join("nope")],
        };
        let err = Binaries::locate_in(&search).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EmbeddedError::BinariesMissing { .. }));
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(msg.contains("brew install postgresql"), "{msg}");
        assert!(msg.contains("SCOPEGATE_PG_BINDIR"), "{msg}");
    }

    #[test]
    fn explicit_bindir_is_the_only_candidate() {
        let empty = tempfile::tempdir().unwrap();
        let search = Search {
            explicit: Some(empty.path().to_path_buf()),
            path_dirs: vec![],
            use_pg_config: true,
            globs: vec![],
        };
        let msg = Binaries::locate_in(&search).unwrap_err().to_string();
        assert!(msg.contains("looked in SCOPEGATE_PG_BINDIR"), "{msg}");
    }

    #[test]
    fn version_sorting() {
        assert_eq!(version_of(Path::new("/usr/lib/postgresql/15/bin")), 15);
        assert_eq!(
            version_of(Path::new("/opt/homebrew/opt/postgresql@16/bin")),
            16
        );
    }
}
