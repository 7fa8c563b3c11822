//! The gateway: everything between the outside world and the application loop's rings.
//!
//! - [`fix`]: the FIX 4.4 acceptor: codec, session layer, session store and TCP loop.
//! - [`message`]: the owned FIX message the other modules pass around.

pub mod fix;
pub mod message;

pub use message::{FieldError, Message};
