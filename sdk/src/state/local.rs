//! The local state store: `<dir>/<stack>.json` (mode 0600, written via temp file + fsync + rename) and a lock
//! file `<dir>/<stack>.lock` that names its holder.
//!
//! The lock file is created atomically with its content (written to a temporary name, then hard-linked into
//! place, which fails if a lock exists) and stays `flock`ed by the holder for as long as it is held. A
//! contender that finds the file can therefore tell a live holder (the `flock` is busy:
//! [`ErrorKind::LockHeld`]) from one that died ([`ErrorKind::LockStale`]), and reports either with the
//! holder's details. A stale lock is never taken over silently: `state unlock ID` removes it.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{LockInfo, State, StateStore, lock_held};
use crate::error::{Error, ErrorKind, Result};

/// State in a local directory.
#[derive(Debug)]
pub struct LocalStore {
    dir: PathBuf,
    stack: String,
    held: Mutex<Option<(LockInfo, File)>>,
    last_written: Mutex<Option<(String, u64)>>,
}

impl LocalStore {
    /// The store for `stack` under `dir` (created on first save, mode 0700).
    pub fn new(dir: impl Into<PathBuf>, stack: &str) -> Self {
        LocalStore { dir: dir.into(), stack: stack.to_owned(), held: Mutex::new(None), last_written: Mutex::new(None) }
    }

    /// The state file's path.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.stack))
    }

    /// The lock file's path.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(format!("{}.lock", self.stack))
    }

    fn ensure_dir(&self) -> Result<()> {
        if !self.dir.exists() {
            fs::create_dir_all(&self.dir).map_err(|e| io_error("create the state directory", &self.dir, e))?;
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| io_error("restrict the state directory", &self.dir, e))?;
        }
        Ok(())
    }

    fn lock_sync(&self, operation: &str) -> Result<LockInfo> {
        self.ensure_dir()?;
        let info = LockInfo::for_this_process(operation);
        let path = self.lock_path();
        let temp = self.dir.join(format!(".{}.lock.{}", self.stack, info.id));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| io_error("create a lock file", &temp, e))?;
        let body = serde_json::to_string_pretty(&info).expect("lock info serialises");
        let written = file.write_all(body.as_bytes()).and_then(|()| file.sync_all());
        let locked = file.try_lock().map_err(|e| std::io::Error::other(e.to_string()));
        let linked = written.and(locked).and_then(|()| fs::hard_link(&temp, &path));
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                *self.held.lock().expect("lock mutex") = Some((info.clone(), file));
                Ok(info)
            }
            Err(e) if e.kind() == IoKind::AlreadyExists => Err(self.describe_existing_lock()),
            Err(e) => Err(io_error("take the lock", &path, e)),
        }
    }

    /// The error for a lock file that already exists: held by a live process, or stale.
    fn describe_existing_lock(&self) -> Error {
        let path = self.lock_path();
        let Ok(file) = File::open(&path) else {
            // Released between our attempt and this look: report it as held, the caller may simply retry.
            return Error::new(
                ErrorKind::LockHeld,
                format!("the state of stack {:?} was locked a moment ago", self.stack),
            );
        };
        let info: Option<LockInfo> = fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
        let Some(info) = info else {
            return Error::new(
                ErrorKind::LockHeld,
                format!("the state of stack {:?} is locked ({} exists but is unreadable)", self.stack, path.display()),
            );
        };
        match file.try_lock() {
            Err(_) => lock_held(&self.stack, &info),
            Ok(()) => Error::new(
                ErrorKind::LockStale,
                format!(
                    "the state of stack {:?} has a stale lock: {}; that process no longer holds it. If no \
                     operation is running, release it with `state unlock {}`",
                    self.stack,
                    info.describe(),
                    info.id
                ),
            ),
        }
    }

    fn save_sync(&self, state: &State) -> Result<()> {
        self.ensure_dir()?;
        {
            let last = self.last_written.lock().expect("mutex");
            if let Some((lineage, serial)) = last.as_ref()
                && (*lineage != state.lineage || state.serial <= *serial)
            {
                return Err(Error::state(format!(
                    "refusing to write state of stack {:?}: lineage/serial {}/{} does not follow {}/{}",
                    self.stack, state.lineage, state.serial, lineage, serial
                )));
            }
        }
        let path = self.state_path();
        let temp = self.dir.join(format!(".{}.json.{}.tmp", self.stack, std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
            file.write_all(state.to_json().as_bytes())?;
            file.sync_all()?;
            fs::rename(&temp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            io_error("write state", &path, e)
        })?;
        *self.last_written.lock().expect("mutex") = Some((state.lineage.clone(), state.serial));
        Ok(())
    }

    fn load_sync(&self) -> Result<Option<State>> {
        let path = self.state_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read state", &path, e)),
        };
        let state = State::from_json(&text, &self.stack, &path.display().to_string())?;
        let mut last = self.last_written.lock().expect("mutex");
        if let Some((lineage, _)) = last.as_ref()
            && *lineage != state.lineage
        {
            return Err(Error::state(format!(
                "state {} changed lineage under us ({} -> {})",
                path.display(),
                lineage,
                state.lineage
            )));
        }
        *last = Some((state.lineage.clone(), state.serial));
        Ok(Some(state))
    }
}

#[async_trait]
impl StateStore for LocalStore {
    fn describe(&self) -> String {
        format!("local file {}", self.state_path().display())
    }

    async fn lock(&self, operation: &str) -> Result<LockInfo> {
        self.lock_sync(operation)
    }

    async fn unlock(&self) -> Result<()> {
        let held = self.held.lock().expect("mutex").take();
        if let Some((_, file)) = held {
            let path = self.lock_path();
            fs::remove_file(&path).map_err(|e| io_error("remove the lock file", &path, e))?;
            drop(file);
        }
        Ok(())
    }

    async fn force_unlock(&self, id: &str) -> Result<()> {
        let path = self.lock_path();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == IoKind::NotFound => {
                return Err(Error::new(ErrorKind::State, format!("stack {:?} is not locked", self.stack)));
            }
            Err(e) => return Err(io_error("open the lock file", &path, e)),
        };
        let info: LockInfo = fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| Error::state(format!("lock file {} is unreadable; remove it by hand", path.display())))?;
        if info.id != id {
            return Err(Error::new(
                ErrorKind::LockHeld,
                format!(
                    "the lock of stack {:?} has id {}, not {id}; it is held by {}",
                    self.stack,
                    info.id,
                    info.describe()
                ),
            ));
        }
        if file.try_lock().is_err() {
            return Err(Error::new(
                ErrorKind::LockHeld,
                format!("refusing to unlock stack {:?}: its holder is still running: {}", self.stack, info.describe()),
            ));
        }
        fs::remove_file(&path).map_err(|e| io_error("remove the lock file", &path, e))
    }

    async fn load(&self) -> Result<Option<State>> {
        self.load_sync()
    }

    async fn save(&self, state: &State) -> Result<()> {
        self.save_sync(state)
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        if let Ok(held) = self.held.get_mut()
            && held.take().is_some()
        {
            let _ = fs::remove_file(self.lock_path());
        }
    }
}

fn io_error(action: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::State, format!("failed to {action} {}", path.display())).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_locker_gets_an_error_naming_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = LocalStore::new(dir.path(), "web");
        let second = LocalStore::new(dir.path(), "web");
        let info = first.lock("up").await.expect("first lock");
        let err = second.lock("destroy").await.expect_err("second lock must fail");
        assert_eq!(err.kind(), ErrorKind::LockHeld);
        let text = err.to_string();
        assert!(text.contains(&info.who) && text.contains("for `up`") && text.contains(&info.id), "{text}");
        first.unlock().await.expect("unlock");
        second.lock("destroy").await.expect("free again");
    }

    #[tokio::test]
    async fn a_lock_whose_holder_is_gone_is_reported_stale_and_released_only_by_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A holder that died: its lock file exists but nobody holds the flock.
        let info = LockInfo::for_this_process("up");
        fs::write(dir.path().join("web.lock"), serde_json::to_string(&info).expect("json")).expect("write");
        let store = LocalStore::new(dir.path(), "web");
        let err = store.lock("plan").await.expect_err("stale");
        assert_eq!(err.kind(), ErrorKind::LockStale);
        assert!(err.to_string().contains(&format!("state unlock {}", info.id)), "{err}");
        assert_eq!(store.force_unlock("wrong-id").await.expect_err("wrong id").kind(), ErrorKind::LockHeld);
        store.force_unlock(&info.id).await.expect("unlock by id");
        store.lock("plan").await.expect("lock after unlock");
    }

    #[tokio::test]
    async fn state_writes_are_atomic_private_and_ordered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().join("nested"), "web");
        let mut state = State::new("web");
        state.serial = 1;
        store.save(&state).await.expect("save");
        let meta = fs::metadata(store.state_path()).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // No temporary file is left next to the state.
        let names: Vec<_> =
            fs::read_dir(dir.path().join("nested")).expect("ls").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("web.json")]);
        // A write that does not advance the serial is refused, and so is another lineage.
        assert_eq!(store.save(&state).await.expect_err("same serial").kind(), ErrorKind::State);
        let other = State { serial: 5, ..State::new("web") };
        assert_eq!(store.save(&other).await.expect_err("other lineage").kind(), ErrorKind::State);
        state.serial = 2;
        store.save(&state).await.expect("next serial");
        assert_eq!(LocalStore::new(dir.path().join("nested"), "web").load().await.expect("load"), Some(state));
    }

    #[tokio::test]
    async fn an_interrupted_write_leaves_the_previous_state_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path(), "web");
        let state = State { serial: 1, ..State::new("web") };
        store.save(&state).await.expect("save");
        // Simulate a writer killed half-way: a partial temporary file next to the state.
        fs::write(dir.path().join(".web.json.999.tmp"), "{\"version\": 1, \"sta").expect("partial");
        let loaded = LocalStore::new(dir.path(), "web").load().await.expect("load");
        assert_eq!(loaded, Some(state));
    }
}
