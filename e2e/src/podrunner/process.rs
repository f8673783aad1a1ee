//! A container's process: started in its own process group, its exit reported on a
//! channel, signalled as a group.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::mpsc;

use super::plan::ContainerPlan;

/// How a process ended.
#[derive(Debug, Clone)]
pub struct ExitInfo {
    /// Index of the container in the Pod spec.
    pub container: usize,
    /// Which start of that container this was (restarts count up).
    pub generation: u32,
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// When the runner saw it end.
    pub finished_at: Time,
}

impl ExitInfo {
    /// The exit code as Kubernetes reports it: 128 + signal for a signalled process.
    pub fn k8s_exit_code(&self) -> i32 {
        self.code.or(self.signal.map(|s| 128 + s)).unwrap_or(-1)
    }
}

/// A process that could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The log file could not be opened.
    #[error("cannot open log file {path}")]
    Log {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The binary could not be executed.
    #[error("cannot start {program}")]
    Exec {
        /// The binary.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Starts `program` as `plan` says, its stdout and stderr appended to `log`, in a new
/// process group (so a signal reaches its children too). Its exit is sent on `exits`.
/// `link` → `target`, replacing an older link (a restart lays volumes out again).
fn make_link(link: &Path, target: &Path) -> std::io::Result<()> {
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(link)?,
        _ => {}
    }
    std::os::unix::fs::symlink(target, link)
}

/// Returns the process id.
pub fn spawn(
    program: &Path,
    plan: &ContainerPlan,
    log: &Path,
    container: usize,
    generation: u32,
    exits: mpsc::UnboundedSender<ExitInfo>,
) -> Result<i32, SpawnError> {
    let log_err = |source| SpawnError::Log {
        path: log.to_owned(),
        source,
    };
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent).map_err(log_err)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(log_err)?;
    let err = out.try_clone().map_err(log_err)?;
    std::fs::create_dir_all(&plan.workdir).map_err(|source| SpawnError::Exec {
        program: program.to_owned(),
        source,
    })?;
    for (link, target) in &plan.links {
        make_link(link, target).map_err(|source| SpawnError::Exec {
            program: program.to_owned(),
            source,
        })?;
    }
    let mut child = tokio::process::Command::new(program)
        .args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&plan.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .spawn()
        .map_err(|source| SpawnError::Exec {
            program: program.to_owned(),
            source,
        })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    tokio::spawn(async move {
        let status = child.wait().await;
        let (code, signal) = match status {
            Ok(s) => (s.code(), s.signal()),
            Err(_) => (None, None),
        };
        // The receiver is gone only when the pod task ended; nothing is left to tell.
        let _ = exits.send(ExitInfo {
            container,
            generation,
            code,
            signal,
            finished_at: Time(k8s_openapi::jiff::Timestamp::now()),
        });
    });
    Ok(pid)
}

/// A signal the runner sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM: please stop.
    Term,
    /// SIGKILL: stop now.
    Kill,
    /// SIGINT.
    Int,
}

impl Sig {
    /// Parses `SIGKILL`, `KILL`, `9`, `SIGTERM`, `TERM`, `15`, `SIGINT`, `INT`, `2`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s.strip_prefix("SIG").unwrap_or(s);
        match s.to_ascii_uppercase().as_str() {
            "KILL" | "9" => Some(Self::Kill),
            "TERM" | "15" => Some(Self::Term),
            "INT" | "2" => Some(Self::Int),
            _ => None,
        }
    }
}

/// Sends `sig` to the process group led by `pid`. An already-gone group is not an error.
pub fn signal_group(pid: i32, sig: Sig) -> std::io::Result<()> {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return Ok(());
    };
    let sig = match sig {
        Sig::Term => rustix::process::Signal::TERM,
        Sig::Kill => rustix::process::Signal::KILL,
        Sig::Int => rustix::process::Signal::INT,
    };
    match rustix::process::kill_process_group(pid, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_exit_codes_and_signals() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let plan = ContainerPlan {
            name: "c".into(),
            args: vec!["-c".into(), "echo hi; exit 3".into()],
            env: vec![],
            workdir: dir.path().to_owned(),
            links: vec![],
        };
        spawn(
            Path::new("/bin/sh"),
            &plan,
            &dir.path().join("c.log"),
            0,
            1,
            tx.clone(),
        )
        .unwrap();
        let exit = rx.recv().await.unwrap();
        assert_eq!(exit.code, Some(3));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("c.log")).unwrap(),
            "hi\n"
        );

        let plan = ContainerPlan {
            args: vec!["-c".into(), "sleep 30".into()],
            ..plan
        };
        let pid = spawn(
            Path::new("/bin/sh"),
            &plan,
            &dir.path().join("c.log"),
            0,
            2,
            tx,
        )
        .unwrap();
        signal_group(pid, Sig::Kill).unwrap();
        let exit = rx.recv().await.unwrap();
        assert_eq!(exit.signal, Some(9));
        assert_eq!(exit.k8s_exit_code(), 137);
    }

    #[test]
    fn parses_signal_names() {
        assert_eq!(Sig::parse("SIGKILL"), Some(Sig::Kill));
        assert_eq!(Sig::parse("term"), Some(Sig::Term));
        assert_eq!(Sig::parse("HUP"), None);
    }
}
