//! What the user's app may return.

use std::fmt::Display;

/// The output of the app's future: `()`, or a `Result<(), E>` whose error is shown when
/// the worker exits with it (`std::io::Result<()>`, `anyhow::Result<()>`, ...).
pub trait AppResult {
    /// `Err` with the error's text when the app failed.
    fn into_app_result(self) -> Result<(), String>;
}

impl AppResult for () {
    fn into_app_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> AppResult for Result<(), E> {
    fn into_app_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}
