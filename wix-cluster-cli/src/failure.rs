//! What went wrong, as the exit codes tell it: 1 the action failed, 2 usage, 3 the
//! cluster cannot be reached, 4 not authorised (0 is success).

use std::process::ExitCode;

/// A command's failure, with the message printed on stderr.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The action was refused or stopped (a successor failed, a timeout): exit 1.
    Failed(String),
    /// The command line or the choice of a cluster is wrong: exit 2.
    Usage(String),
    /// No cluster found, or its management app does not answer: exit 3.
    Unreachable(String),
    /// No admin token, or the wrong one: exit 4.
    Unauthorised(String),
}

impl Failure {
    /// The process's exit code.
    pub(crate) fn code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Failed(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::Unauthorised(_) => 4,
        })
    }

    /// What to print.
    pub(crate) fn message(&self) -> &str {
        match self {
            Failure::Failed(m)
            | Failure::Usage(m)
            | Failure::Unreachable(m)
            | Failure::Unauthorised(m) => m,
        }
    }
}
