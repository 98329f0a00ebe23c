//! One error type for everything pg_beacon raises, each variant tied to a SQLSTATE so that
//! clients can branch on the code instead of parsing messages.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum BeaconError {
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    ReservedName(String),
    #[error("project \"{0}\" does not exist")]
    UnknownProject(String),
    #[error("collection \"{1}\" does not exist in project \"{0}\"")]
    UnknownCollection(String, String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    TypeMismatch(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    UnknownObject(String),
    /// User SQL the SQL policy refused, with the SQLSTATE of the refusal's kind, the
    /// same on every surface.
    #[error("{0}")]
    Refused(String, PgSqlErrorCode),
    /// Something still depends on what is being dropped: the message and a HINT.
    #[error("{0}")]
    StillInUse(String, String),
    /// A name is taken: the message and a HINT.
    #[error("{0}")]
    Taken(String, String),
    #[error("SPI error: {0}")]
    Spi(#[from] pgrx::spi::Error),
    #[error("{0}")]
    DependentObjects(String),
    /// A concurrent change this transaction cannot be ordered with: retry it.
    #[error("{0}")]
    SerializationFailure(String),
    /// A file could not be read, written or synced (the archive).
    #[error("{0}")]
    Io(String),
    /// A file does not hold what was recorded of it (the archive's checks).
    #[error("{0}")]
    Corrupted(String),
}

impl BeaconError {
    /// A refusal of the SQL policy, its message after `prefix` ("query refused").
    pub fn refused(prefix: &str, refusal: crate::sql_policy::Refusal) -> BeaconError {
        BeaconError::Refused(format!("{prefix}: {refusal}"), refusal.sqlstate())
    }

    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            BeaconError::InvalidName(_) => ERRCODE_INVALID_NAME,
            BeaconError::ReservedName(_) => ERRCODE_RESERVED_NAME,
            BeaconError::UnknownProject(_) => ERRCODE_INVALID_SCHEMA_NAME,
            BeaconError::UnknownCollection(..) => ERRCODE_UNDEFINED_TABLE,
            BeaconError::AlreadyExists(_) => ERRCODE_DUPLICATE_OBJECT,
            BeaconError::InvalidArgument(_) => ERRCODE_INVALID_PARAMETER_VALUE,
            BeaconError::TypeMismatch(_) => ERRCODE_DATATYPE_MISMATCH,
            BeaconError::PermissionDenied(_) => ERRCODE_INSUFFICIENT_PRIVILEGE,
            BeaconError::LimitExceeded(_) => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            BeaconError::Unsupported(_) => ERRCODE_FEATURE_NOT_SUPPORTED,
            BeaconError::UnknownObject(_) => ERRCODE_UNDEFINED_OBJECT,
            BeaconError::Refused(_, code) => *code,
            BeaconError::StillInUse(..) => ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            BeaconError::Taken(..) => ERRCODE_DUPLICATE_OBJECT,
            BeaconError::Spi(_) => ERRCODE_INTERNAL_ERROR,
            BeaconError::DependentObjects(_) => ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            BeaconError::SerializationFailure(_) => ERRCODE_T_R_SERIALIZATION_FAILURE,
            BeaconError::Io(_) => ERRCODE_IO_ERROR,
            BeaconError::Corrupted(_) => ERRCODE_DATA_CORRUPTED,
        }
    }

    fn hint(&self) -> Option<&str> {
        match self {
            BeaconError::InvalidName(_) => Some(
                "Names start with a lowercase letter and use only lowercase letters, digits and underscores.",
            ),
            BeaconError::UnknownProject(_) => Some("Create it first with beacon.create_project(name)."),
            BeaconError::StillInUse(_, hint) | BeaconError::Taken(_, hint) => Some(hint),
            BeaconError::SerializationFailure(_) => Some("Retry the transaction."),
            BeaconError::DependentObjects(_) => {
                Some("Drop them first, or pass cascade => true to drop them along with it.")
            }
            _ => None,
        }
    }
}

impl From<BeaconError> for ErrorReport {
    #[track_caller]
    fn from(err: BeaconError) -> Self {
        let hint = err.hint().map(str::to_owned);
        let report = ErrorReport::new(err.sqlstate(), err.to_string(), "pg_beacon");
        match hint {
            Some(h) => report.set_hint(h),
            None => report,
        }
    }
}

pub type BeaconResult<T> = Result<T, BeaconError>;

/// Unwraps, or raises the error as a PostgreSQL ERROR with its SQLSTATE: the one exit of
/// every SQL entry point.
#[track_caller]
pub fn report<T>(result: BeaconResult<T>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => {
            ErrorReport::from(err).report(pgrx::PgLogLevel::ERROR);
            unreachable!("ERROR does not return")
        }
    }
}
