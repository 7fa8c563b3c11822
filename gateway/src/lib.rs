//! The gateway: everything between the outside world and the application loop's rings.
//!
//! - [`message`]: the owned FIX message the other modules pass around.

pub mod message;

pub use message::{FieldError, Message};
