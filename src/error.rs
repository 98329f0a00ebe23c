//! One error type for everything pg_tide raises, each variant tied to a SQLSTATE so that
//! clients can branch on the code instead of parsing messages.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum TideError {
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
    #[error("SPI error: {0}")]
    Spi(#[from] pgrx::spi::Error),
}

impl TideError {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            TideError::InvalidName(_) => ERRCODE_INVALID_NAME,
            TideError::ReservedName(_) => ERRCODE_RESERVED_NAME,
            TideError::UnknownProject(_) => ERRCODE_INVALID_SCHEMA_NAME,
            TideError::UnknownCollection(..) => ERRCODE_UNDEFINED_TABLE,
            TideError::AlreadyExists(_) => ERRCODE_DUPLICATE_OBJECT,
            TideError::InvalidArgument(_) => ERRCODE_INVALID_PARAMETER_VALUE,
            TideError::TypeMismatch(_) => ERRCODE_DATATYPE_MISMATCH,
            TideError::PermissionDenied(_) => ERRCODE_INSUFFICIENT_PRIVILEGE,
            TideError::LimitExceeded(_) => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            TideError::Unsupported(_) => ERRCODE_FEATURE_NOT_SUPPORTED,
            TideError::UnknownObject(_) => ERRCODE_UNDEFINED_OBJECT,
            TideError::Spi(_) => ERRCODE_INTERNAL_ERROR,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            TideError::InvalidName(_) => Some(
                "Names start with a lowercase letter and use only lowercase letters, digits and underscores.",
            ),
            TideError::UnknownProject(_) => Some("Create it first with tide.create_project(name)."),
            _ => None,
        }
    }
}

impl From<TideError> for ErrorReport {
    #[track_caller]
    fn from(err: TideError) -> Self {
        let hint = err.hint();
        let report = ErrorReport::new(err.sqlstate(), err.to_string(), "pg_tide");
        match hint {
            Some(h) => report.set_hint(h),
            None => report,
        }
    }
}

pub type TideResult<T> = Result<T, TideError>;

/// Unwraps, or raises the error as a PostgreSQL ERROR with its SQLSTATE: the one exit of
/// every SQL entry point.
#[track_caller]
pub fn report<T>(result: TideResult<T>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => {
            ErrorReport::from(err).report(pgrx::PgLogLevel::ERROR);
            unreachable!("ERROR does not return")
        }
    }
}
