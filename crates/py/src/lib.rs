//! The native half of the `cnnsplit` Python package: the library crates (cnn-data, cnn-models,
//! splitter-grad, splitter-ga, composer) wrapped with PyO3, the way the CLI wires them.
//!
//! The Python half (`python/cnnsplit/__init__.py`) turns NumPy arrays into the byte buffers
//! taken here, parses the JSON reports returned here, and turns progress events into tqdm bars
//! and user callbacks. Every long call runs with the GIL released; its progress events go
//! through a [`Hook`] that re-acquires the GIL, runs the Python callback and checks for
//! signals. A Python exception raised there (KeyboardInterrupt above all) unwinds out of the
//! library call to [`detached`], which raises it in Python: the run stops between two events,
//! so the checkpoints the libraries write atomically stay intact and `resume=True` continues
//! from the last one. No Rust panic crosses into Python: [`detached`] turns one into a
//! `CnnsplitError`.

use std::panic::AssertUnwindSafe;

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

mod artefacts;
mod data;
mod models;
mod splitting;

pyo3::create_exception!(
    _native,
    CnnsplitError,
    PyException,
    "A cnnsplit library call failed; the message is the Rust error's (file and problem named)."
);

/// A library error as the Python exception `CnnsplitError`, carrying the error's message.
pub fn lib_err(e: impl std::fmt::Display) -> PyErr {
    CnnsplitError::new_err(e.to_string())
}

/// A wrong argument as `ValueError`.
pub fn value_err(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

/// A Python exception raised in a progress hook, carried out of the library call by
/// unwinding (the libraries' progress callbacks cannot return an error).
struct Raised(PyErr);

/// Progress events of a long call, sent to an optional Python callback as
/// `callback(event_name, info_json)`; every event also checks for pending signals, so Ctrl-C
/// (KeyboardInterrupt) stops the call at the next event.
pub struct Hook {
    callback: Option<Py<PyAny>>,
}

impl Hook {
    /// A hook calling `callback` (if any) on every event.
    pub fn new(callback: Option<Py<PyAny>>) -> Self {
        Hook { callback }
    }

    /// Report `event` with `info`; a Python exception (from the callback or a signal handler)
    /// unwinds out of the running library call and is raised by [`detached`].
    pub fn emit(&self, event: &str, info: serde_json::Value) {
        let outcome = Python::attach(|py| -> PyResult<()> {
            py.check_signals()?;
            if let Some(cb) = &self.callback {
                cb.call1(py, (event, info.to_string()))?;
            }
            Ok(())
        });
        if let Err(e) = outcome {
            std::panic::resume_unwind(Box::new(Raised(e)));
        }
    }
}

/// Run `f` with the GIL released. A Python exception raised in one of its [`Hook`]s is raised
/// again here; a panic becomes `CnnsplitError` (no panic reaches Python).
pub fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> PyResult<T> + Send) -> PyResult<T> {
    match py.detach(|| std::panic::catch_unwind(AssertUnwindSafe(f))) {
        Ok(result) => result,
        Err(payload) => Err(match payload.downcast::<Raised>() {
            Ok(raised) => raised.0,
            Err(other) => {
                let message = other
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| other.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                CnnsplitError::new_err(format!("internal error in cnnsplit: {message}"))
            }
        }),
    }
}

/// A serialisable value as JSON text (the Python half parses it).
pub fn to_json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(lib_err)
}

/// The native module `cnnsplit._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CnnsplitError", m.py().get_type::<CnnsplitError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    data::register(m)?;
    models::register(m)?;
    splitting::register(m)?;
    artefacts::register(m)?;
    Ok(())
}
