//! The Python exceptions of the core, and the one place each Rust error becomes a `PyErr`
//! (STYLE rule 3); `app/errors.py` maps these exceptions to HTTP answers once.
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{base32, gs1, keys, pin, serial};

pyo3::create_exception!(
    app._core,
    SerialError,
    PyValueError,
    "Base class of every serial verification failure."
);
pyo3::create_exception!(
    app._core,
    MalformedSerial,
    SerialError,
    "Not 20 Crockford Base32 symbols (wrong length or character)."
);
pyo3::create_exception!(
    app._core,
    ForgedSerial,
    SerialError,
    "Well-formed, but the tag matches under no active key version."
);
pyo3::create_exception!(
    app._core,
    UnknownKeyVersion,
    SerialError,
    "A key version that is not active was requested."
);
pyo3::create_exception!(
    app._core,
    Gs1Error,
    PyValueError,
    "Invalid GS1 data or Digital Link URI."
);

pub(crate) fn serial_err(e: serial::SerialError) -> PyErr {
    match e {
        serial::SerialError::Malformed(msg) => MalformedSerial::new_err(msg),
        serial::SerialError::Forged => {
            ForgedSerial::new_err("serial does not verify under any active key version")
        }
        serial::SerialError::UnknownVersion(v) => {
            UnknownKeyVersion::new_err(format!("key version {v} is not active"))
        }
    }
}

pub(crate) fn key_err(e: keys::KeyError) -> PyErr {
    match e {
        keys::KeyError::MasterLength(n) => {
            PyValueError::new_err(format!("master key must be 32 bytes, got {n}"))
        }
        keys::KeyError::Versions(msg) | keys::KeyError::Purpose(msg) => PyValueError::new_err(msg),
        keys::KeyError::UnknownVersion(v) => {
            UnknownKeyVersion::new_err(format!("key version {v} is not active"))
        }
    }
}

pub(crate) fn scheme_err(e: serial::SchemeError) -> PyErr {
    match e {
        serial::SchemeError::Key(k) => key_err(k),
        serial::SchemeError::PinLength(n) => PyValueError::new_err(format!(
            "pin_length must be between {} and {}, got {n}",
            pin::MIN_LEN,
            pin::MAX_LEN
        )),
    }
}

pub(crate) fn gs1_err(e: gs1::Gs1Error) -> PyErr {
    Gs1Error::new_err(e.0)
}

/// ValueErrors of argument ranges become Gs1Error in the GS1 functions; TypeErrors stay.
pub(crate) fn to_gs1(py: Python<'_>, e: PyErr) -> PyErr {
    if e.is_instance_of::<PyValueError>(py) {
        Gs1Error::new_err(e.value(py).to_string())
    } else {
        e
    }
}

pub(crate) fn base32_err(e: base32::DecodeError) -> PyErr {
    match e {
        base32::DecodeError::BadSymbol => {
            MalformedSerial::new_err("character outside Crockford Base32")
        }
        base32::DecodeError::BadLength => MalformedSerial::new_err("must have 1 to 25 symbols"),
    }
}
