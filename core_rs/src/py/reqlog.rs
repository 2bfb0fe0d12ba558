//! `app._core.RequestLog`: the request log's binding (`crate::reqlog`). Every method runs with
//! the GIL held and holds the lock only while it runs, so the lock is never contended and never
//! held across a fork.
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::reqlog::RequestLog;

/// The request metrics and log lines of this process (`app.logs.requests`).
#[pyclass(frozen, module = "app._core", name = "RequestLog")]
pub(crate) struct PyRequestLog {
    inner: Mutex<RequestLog>,
    wake_at: usize,
}

impl PyRequestLog {
    fn log(&self) -> MutexGuard<'_, RequestLog> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[pymethods]
impl PyRequestLog {
    #[new]
    #[pyo3(signature = (wake_at = 262144))]
    fn new(wake_at: usize) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self {
            inner: Mutex::new(RequestLog::new(seed)),
            wake_at,
        }
    }

    /// One answered request: counted, and its access line added when ``log`` is true and the
    /// answer is 400 or more or falls in ``sample`` (a fraction). True when the lines gathered
    /// reached ``wake_at`` bytes (time to wake the writer).
    #[allow(clippy::too_many_arguments)]
    fn done(
        &self,
        rid: &str,
        method: &str,
        path: &Bound<'_, PyString>,
        route: &str,
        status: u16,
        seconds: f64,
        sample: f64,
        log: bool,
    ) -> bool {
        let mut inner = self.log();
        inner.observe(method, route, status, seconds);
        if log && (status >= 400 || inner.sampled(sample)) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            match path.to_str() {
                Ok(path) => inner.access(now, rid, method, path, status, seconds),
                // a lone surrogate (undecodable bytes): written as U+FFFD
                Err(_) => inner.access(now, rid, method, &path.to_string_lossy(), status, seconds),
            }
        }
        inner.gathered() >= self.wake_at
    }

    /// Add a formatted log line; true when the lines gathered reached ``wake_at`` bytes.
    fn put(&self, line: &Bound<'_, PyString>) -> bool {
        let mut inner = self.log();
        match line.to_str() {
            Ok(line) => inner.put(line),
            Err(_) => inner.put(&line.to_string_lossy()),
        }
        inner.gathered() >= self.wake_at
    }

    /// The lines gathered so far (JSON lines, UTF-8), removed from the log.
    fn take<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut taken = None;
        self.log()
            .take_into(|lines| taken = Some(PyBytes::new(py, lines)));
        taken.unwrap_or_else(|| PyBytes::new(py, b""))
    }

    /// Every series counted: (method, route, [(status, requests)], requests per latency bucket
    /// (not cumulative, the last one above every bound), sum of seconds).
    #[allow(clippy::type_complexity)]
    fn series(&self) -> Vec<(&'static str, String, Vec<(u16, u64)>, Vec<u64>, f64)> {
        self.log()
            .series()
            .into_iter()
            .map(|(m, r, s)| {
                (
                    m,
                    r.to_owned(),
                    s.statuses.clone(),
                    s.buckets.to_vec(),
                    s.sum,
                )
            })
            .collect()
    }
}
